/**
 * aws-local-stepfunctions without what the local runner never uses. The package's build loads,
 * as soon as it is imported, the AWS SDK's Lambda client (to call deployed functions: the
 * runner gives every Task state a local handler) and asl-validator (the shipped workflow is
 * validated by its test, not at every run): about 0.12 s of every CLI start, 0.16 s under tsx.
 * While the package loads, those modules are stubs: the Lambda client throws if it is ever
 * used, and the validator loads on its first call (a definition file given to the runner).
 */
import { createRequire } from 'node:module';
import type { StateMachine as PackageStateMachine } from 'aws-local-stepfunctions';

// aws-local-stepfunctions 3 uses Promise.withResolvers, which Node 20 lacks.
if (!('withResolvers' in Promise)) {
  Object.defineProperty(Promise, 'withResolvers', {
    value<T>() {
      let resolve!: (value: T) => void;
      let reject!: (reason?: unknown) => void;
      const promise = new Promise<T>((res, rej) => ((resolve = res), (reject = rej)));
      return { promise, resolve, reject };
    },
  });
}

const packageRequire = createRequire(createRequire(import.meta.url).resolve('aws-local-stepfunctions'));

class NotLocal {
  constructor() {
    throw new Error('aws-local-stepfunctions wanted to call AWS: the local runner gives every Task state a handler.');
  }
}

const stubs: Record<string, unknown> = {
  '@aws-sdk/client-lambda': { LambdaClient: NotLocal, InvokeCommand: NotLocal },
  '@aws-sdk/credential-providers': { fromCognitoIdentityPool: () => new NotLocal() },
  'asl-validator': (...args: unknown[]) => (packageRequire('asl-validator') as (...args: unknown[]) => unknown)(...args),
};

/** Loads the package's CommonJS build with the stubs in the require cache, then takes them out again. */
function loadWithStubs(): { StateMachine: typeof PackageStateMachine } {
  const cache = packageRequire.cache;
  const placed: string[] = [];
  for (const [id, exports] of Object.entries(stubs)) {
    const filename = packageRequire.resolve(id);
    // Already loaded for real (by pgferry's AWS commands): the package may as well use it.
    if (cache[filename]) continue;
    cache[filename] = { id: filename, filename, loaded: true, exports } as NodeJS.Module;
    placed.push(filename);
  }
  try {
    return packageRequire('aws-local-stepfunctions');
  } finally {
    for (const filename of placed) delete cache[filename];
  }
}

export const StateMachine = loadWithStubs().StateMachine;
export type StateMachine = PackageStateMachine;
export type { StateMachineDefinition } from 'aws-local-stepfunctions';

/**
 * Runs the workflow file locally with aws-local-stepfunctions: `lambda:invoke` states call the
 * handler of lambdas/ in-process, `ecs:runTask.sync` and `ecs:runTask.waitForTaskToken` states
 * start the tasks/ entrypoint as a child process with the container overrides as its
 * environment. Each handler returns what the AWS integration returns, so the ASL's
 * ResultSelector/Catch behave the same in both worlds.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash, randomUUID } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, renameSync, statSync, writeFileSync, type Stats } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { availableParallelism } from 'node:os';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { localBundleOptions } from '../infra/esbuild-recipe.js';
import { StateMachine, type StateMachineDefinition } from './interpreter.js';
import { lambdaFunctions, type LambdaFunctionDefinition } from '../lambdas/registry.js';
import { LOCAL_CALLBACK_ENV, type IpcCallbackMessage } from '../platform/task-callback.js';
import { fargateTasks, type FargateTaskDefinition } from '../tasks/registry.js';

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

export const repositoryRoot = join(dirname(fileURLToPath(import.meta.url)), '..');
export const workflowFile = join(repositoryRoot, 'state-machines', 'migration.asl.json');

const LOCAL_ACCOUNT = 'arn:aws:lambda:local:000000000000';
const localFunctionArn = (fn: LambdaFunctionDefinition) => `${LOCAL_ACCOUNT}:function:pgferry-${fn.name}`;
const localTaskDefinitionArn = (task: FargateTaskDefinition) =>
  `arn:aws:ecs:local:000000000000:task-definition/pgferry-${task.name}:1`;
/** Stands in for `$$.Task.Token` in the context; each callback task gets a fresh token instead. */
const TOKEN_MARKER = 'pgferry-local-task-token';
/** Infrastructure placeholders that have no meaning locally. */
const localInfrastructure: Record<string, string> = {
  ClusterArn: 'arn:aws:ecs:local:000000000000:cluster/pgferry',
  TaskSubnetIds: 'subnet-local',
  TaskSecurityGroupIds: 'sg-local',
};

/** One entry of the interpreter's event log (state entered/exited/failed, execution ended, …). */
export type WorkflowEvent = ReturnType<StateMachine['run']>['eventLogs'] extends AsyncGenerator<infer E> ? E : never;

export interface TaskOutputLine {
  state: string;
  task: string;
  stream: 'stdout' | 'stderr';
  line: string;
}

export interface LocalRunOptions {
  definitionFile?: string;
  lambdas?: readonly LambdaFunctionDefinition[];
  tasks?: readonly FargateTaskDefinition[];
  signal?: AbortSignal;
  onEvent?: (event: WorkflowEvent) => void;
  onTaskOutput?: (line: TaskOutputLine) => void;
  /** Called with each task's child process as it starts (tests use it to kill workers). */
  onTaskStarted?: (task: { state: string; task: string; pid: number }) => void;
  /** Milliseconds to wait instead of what a Wait state says (tests). */
  waitTimeOverrides?: Record<string, number>;
  /** Milliseconds between retries instead of what a Retry says (tests). */
  retryIntervalOverrides?: Record<string, number | number[]>;
  /** Environment given to every task child process on top of this process's own. */
  taskEnvironment?: NodeJS.ProcessEnv;
}

export interface LocalRunResult {
  status: 'SUCCEEDED' | 'FAILED' | 'ABORTED' | 'TIMED_OUT';
  output?: unknown;
  error?: string;
  cause?: string;
}

export class WorkflowDefinitionError extends Error {}

interface Wiring {
  lambdas: readonly LambdaFunctionDefinition[];
  tasks: readonly FargateTaskDefinition[];
}

/** Replaces every `${X}` placeholder with its local value; an unknown placeholder is an error. */
export function substituteLocally(text: string, wiring: Wiring): string {
  const values = new Map<string, string>(Object.entries(localInfrastructure));
  for (const fn of wiring.lambdas) values.set(fn.arnPlaceholder, localFunctionArn(fn));
  for (const task of wiring.tasks) values.set(task.taskDefinitionPlaceholder, localTaskDefinitionArn(task));
  return text.replace(/\$\{([A-Za-z0-9_]+)\}/g, (_, name: string) => {
    const value = values.get(name);
    if (value === undefined) throw new WorkflowDefinitionError(`The workflow uses the placeholder \${${name}}, which names no Lambda or task.`);
    return value;
  });
}

type AnyState = Record<string, unknown> & { Type: string; Resource?: string; Parameters?: Record<string, unknown> };
type StateMap = Record<string, AnyState>;

function* taskStates(states: StateMap): Generator<[string, AnyState]> {
  for (const [name, state] of Object.entries(states)) {
    if (state.Type === 'Task') yield [name, state];
    const nested = (state.ItemProcessor ?? state.Iterator) as { States: StateMap } | undefined;
    if (nested) yield* taskStates(nested.States);
    for (const branch of (state.Branches as { States: StateMap }[] | undefined) ?? []) yield* taskStates(branch.States);
  }
}

const roundTrip = <T>(value: T): T => (value === undefined ? (null as T) : JSON.parse(JSON.stringify(value)));

/** An error as the local interpreter needs it: `name` is the Step Functions error, `message` the Cause. */
function stepError(name: string, cause: string): Error {
  const error = new Error(cause);
  error.name = name;
  return error;
}

function lambdaInvoker(fn: LambdaFunctionDefinition) {
  let module: Promise<{ handler: (event: unknown, context: unknown) => Promise<unknown> }> | undefined;
  return async (input: unknown) => {
    module ??= import(pathToFileURL(join(repositoryRoot, fn.entry)).href);
    const { handler } = await module;
    const { Payload } = input as { Payload?: unknown };
    const requestId = randomUUID();
    const context = {
      functionName: `pgferry-${fn.name}`,
      functionVersion: '$LATEST',
      awsRequestId: requestId,
      getRemainingTimeInMillis: () => fn.timeoutSeconds * 1000,
      callbackWaitsForEmptyEventLoop: false,
    };
    try {
      const result = await handler(roundTrip(Payload), context);
      return { ExecutedVersion: '$LATEST', Payload: roundTrip(result), StatusCode: 200 };
    } catch (error) {
      const errorType = (error as Error)?.name || 'Error';
      const errorMessage = (error as Error)?.message ?? String(error);
      throw stepError(errorType, JSON.stringify({ errorType, errorMessage, requestId, trace: [] }));
    }
  };
}

/** A warm task process says so once it listens for its task. */
const WARM_READY = 'pgferry-warm-ready';

/**
 * The task processes of a run. Besides the running ones it keeps a spare started ahead with the
 * packages the tasks import already loaded, so a task starts without paying Node's start and
 * those imports (about 0.15 s of CPU) on its state's clock; the spare is given its task over
 * IPC and then runs exactly as a process started for it would.
 *
 * Before a full load it warms as many as the load starts at once (`prepareFor`): otherwise all
 * copy workers but one would start cold, late, and on the CPU the first one copies with. For
 * the same reason a spare is only warmed while fewer tasks run than the machine has cores.
 */
class TaskProcesses {
  readonly #running = new Set<ChildProcess>();
  readonly #ready: ChildProcess[] = [];
  readonly #warming = new Set<ChildProcess>();
  #warmLoader?: string;
  /** How many spares to have once the loader is known (prepareFor may come first). */
  #wanted = 1;
  #closed = false;

  constructor(private readonly environment: NodeJS.ProcessEnv) {}

  /** Keeps a spare from now on, started with `loader` (see warmLoader). */
  keepSpare(loader: string): void {
    this.#warmLoader = loader;
    this.#replenish(this.#wanted);
  }

  /** Warms spares (once) until `count` tasks can start warm at the same time. */
  prepareFor(count: number): void {
    this.#wanted = count;
    this.#replenish(count);
  }

  readonly #bundles = new Map<string, Promise<TaskBundle>>();

  /** The task's bundle, the same for the whole run even if its files change meanwhile. */
  bundle(task: FargateTaskDefinition): Promise<TaskBundle> {
    let bundle = this.#bundles.get(task.entry);
    if (!bundle) this.#bundles.set(task.entry, (bundle = taskBundle(task)));
    return bundle;
  }

  /**
   * A process running `script` with `env` on top of the run's environment: a ready spare given
   * the task (none once the run is over), else one started for it. Tracked until it exits.
   */
  start(script: string, env: Record<string, string>): ChildProcess {
    const spare = this.#closed ? undefined : this.#ready.shift();
    const child = spare ?? this.#spawn(script, { ...this.environment, ...env });
    spare?.send({ script, env });
    this.#track(child);
    return child;
  }

  /** Tracks a task process until it exits; it is killed with the run (at once, if the run is over). */
  #track(child: ChildProcess): void {
    if (this.#closed) return kill(child);
    this.#running.add(child);
    this.#keepOne();
    const ended = () => {
      this.#running.delete(child);
      this.#keepOne();
    };
    child.once('exit', ended);
    child.once('error', ended);
  }

  #keepOne(): void {
    if (this.#running.size < availableParallelism()) this.#replenish(1);
  }

  #replenish(count: number): void {
    while (!this.#closed && this.#warmLoader && this.#ready.length + this.#warming.size < count) this.#startSpare(this.#warmLoader);
  }

  #spawn(script: string, env: NodeJS.ProcessEnv): ChildProcess {
    return spawn(process.execPath, ['--enable-source-maps', script], { cwd: process.cwd(), env, stdio: ['ignore', 'pipe', 'pipe', 'ipc'] });
  }

  #startSpare(loader: string): void {
    const child = this.#spawn(loader, this.environment);
    this.#warming.add(child);
    const forget = () => {
      this.#warming.delete(child);
      const index = this.#ready.indexOf(child);
      if (index >= 0) this.#ready.splice(index, 1);
    };
    child.once('message', (message) => {
      this.#warming.delete(child);
      if (message === WARM_READY && !this.#closed) this.#ready.push(child);
      else kill(child);
    });
    child.once('exit', forget);
    child.once('error', forget);
  }

  killAll(): void {
    this.#closed = true;
    for (const child of [...this.#running, ...this.#ready, ...this.#warming]) kill(child);
  }
}

function kill(child: ChildProcess): void {
  if (child.exitCode !== null || child.signalCode !== null) return;
  child.kill('SIGTERM');
  setTimeout(() => child.exitCode === null && child.signalCode === null && child.kill('SIGKILL'), 5_000).unref();
}

interface ContainerOverrides {
  Overrides?: { ContainerOverrides?: { Name?: string; Environment?: { Name: string; Value: string }[] }[] };
}

function containerEnvironment(input: ContainerOverrides, task: FargateTaskDefinition): Record<string, string> {
  const overrides = input.Overrides?.ContainerOverrides ?? [];
  const container = overrides.find((o) => o.Name === task.containerName) ?? overrides[0];
  return Object.fromEntries((container?.Environment ?? []).map(({ Name, Value }) => [Name, String(Value)]));
}

interface TaskRun {
  child: ChildProcess;
  taskArn: string;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  tail: () => string;
}

interface TaskBundle {
  script: string;
  /** Packages the bundle imports statically: what a warm process loads ahead. */
  packages: string[];
}

const bundleDir = join(repositoryRoot, 'node_modules', '.cache', 'pgferry');

/** How task bundles are built (entry and output file aside). */
const BUNDLE_OPTIONS = localBundleOptions;

/** The build options and esbuild's version, as a record keeps them. */
const bundleRecipe = (version: string) => JSON.stringify({ esbuild: version, ...BUNDLE_OPTIONS });

/** The installed esbuild's version, read without loading esbuild. */
function esbuildVersion(): string {
  return (JSON.parse(readFileSync(join(repositoryRoot, 'node_modules', 'esbuild', 'package.json'), 'utf8')) as { version: string }).version;
}

/** What a task's last bundle was built from: the recipe, and each input file's modification time and size. */
interface BundleRecord extends TaskBundle {
  options: string;
  inputs: Record<string, string>;
}

const digest = (content: Uint8Array | string) => createHash('sha256').update(content).digest('hex').slice(0, 16);
const bundleRecordFile = (task: FargateTaskDefinition) => join(bundleDir, `${task.name}-${digest(task.entry)}.bundle.json`);
const statInput = (path: string) => statSync(join(repositoryRoot, path), { throwIfNoEntry: false });
const inputStamp = (stat: Stats | undefined) => (stat ? `${stat.mtimeMs}:${stat.size}` : 'missing');

/** The task's last bundle, if none of the files it was built from has changed since. */
function unchangedBundle(task: FargateTaskDefinition): TaskBundle | undefined {
  try {
    const record = JSON.parse(readFileSync(bundleRecordFile(task), 'utf8')) as BundleRecord;
    if (record.options !== bundleRecipe(esbuildVersion()) || !existsSync(record.script)) return undefined;
    if (Object.entries(record.inputs).some(([path, stamp]) => inputStamp(statInput(path)) !== stamp)) return undefined;
    return { script: record.script, packages: record.packages };
  } catch {
    return undefined;
  }
}

/**
 * A task's entry bundled with esbuild (dependencies stay in node_modules), so each task process
 * starts as plain Node instead of compiling TypeScript on every start — as the container runs
 * its prebuilt bundle. The file is named by its content: runs of the same code share it, and a
 * run killed before it could clean up leaves nothing new behind. A bundle whose input files are
 * unchanged is used as it is, so a run's first task process need not wait for esbuild.
 */
async function taskBundle(task: FargateTaskDefinition): Promise<TaskBundle> {
  return unchangedBundle(task) ?? buildTaskBundle(task);
}

/** Files besides the sources that decide what a bundle holds. */
const BUNDLE_CONFIG_FILES = ['tsconfig.json', 'package.json'];

async function buildTaskBundle(task: FargateTaskDefinition): Promise<TaskBundle> {
  const esbuild = await import('esbuild');
  const startedAt = Date.now();
  const { outputFiles, metafile } = await esbuild.build({
    absWorkingDir: repositoryRoot,
    entryPoints: [join(repositoryRoot, task.entry)],
    outfile: join(bundleDir, `${task.name}.mjs`),
    write: false,
    ...BUNDLE_OPTIONS,
  });
  const code = outputFiles[0]!.contents;
  const script = join(bundleDir, `${task.name}-${digest(code)}.mjs`);
  writeOnce(script, code);
  const imports = Object.values(metafile.outputs).flatMap((output) => output.imports);
  const packages = [...new Set(imports.filter((i) => i.external && i.kind === 'import-statement' && !i.path.startsWith('node:')).map((i) => i.path))].sort();
  const inputs = [...Object.keys(metafile.inputs), ...BUNDLE_CONFIG_FILES].map((path) => [path, statInput(path)] as const);
  // A file saved while esbuild read it may be in the bundle as it was before: no record, so the next run builds again.
  const changedMeanwhile = inputs.some(([, stat]) => (stat?.mtimeMs ?? 0) >= startedAt);
  if (!changedMeanwhile) {
    const record: BundleRecord = { script, packages, options: bundleRecipe(esbuild.version), inputs: Object.fromEntries(inputs.map(([path, stat]) => [path, inputStamp(stat)])) };
    replaceFile(bundleRecordFile(task), JSON.stringify(record));
  }
  return { script, packages };
}

/** Writes a content-named file unless it exists. */
function writeOnce(path: string, content: Uint8Array | string): void {
  if (!existsSync(path)) replaceFile(path, content);
}

/** Writes a file whole, then renames it into place, so no process reads half of it. */
function replaceFile(path: string, content: Uint8Array | string): void {
  mkdirSync(dirname(path), { recursive: true });
  const partial = `${path}.${process.pid}.partial`;
  writeFileSync(partial, content);
  renameSync(partial, path);
}

/**
 * The script of a warm task process: it listens for its task, says it is ready, loads the
 * packages the tasks import, then — given a task — takes the task's environment and imports its
 * bundle, which runs the task as in a process started for it.
 */
async function warmLoader(bundles: Promise<TaskBundle>[]): Promise<string> {
  const packages = [...new Set((await Promise.all(bundles)).flatMap((bundle) => bundle.packages))].sort();
  const code = `const loaded = Promise.all(${JSON.stringify(packages)}.map((name) => import(name).catch(() => undefined)));
process.once('message', async (message) => {
  await loaded;
  Object.assign(process.env, message.env);
  await import(message.script);
});
process.send(${JSON.stringify(WARM_READY)});
`;
  const path = join(bundleDir, `warm-${digest(code)}.mjs`);
  writeOnce(path, code);
  return path;
}

async function startTask(
  stateName: string,
  task: FargateTaskDefinition,
  environment: Record<string, string>,
  processes: TaskProcesses,
  options: LocalRunOptions,
): Promise<TaskRun> {
  const { script } = await processes.bundle(task);
  if (options.signal?.aborted) throw stepError('States.TaskFailed', 'The run was stopped before the task started.');
  const child = processes.start(script, environment);
  if (child.pid !== undefined) options.onTaskStarted?.({ state: stateName, task: task.name, pid: child.pid });
  let tail = '';
  for (const stream of ['stdout', 'stderr'] as const) {
    let pending = '';
    child[stream]!.setEncoding('utf8').on('data', (chunk: string) => {
      tail = (tail + chunk).slice(-4000);
      const lines = (pending + chunk).split('\n');
      pending = lines.pop()!;
      for (const line of lines) options.onTaskOutput?.({ state: stateName, task: task.name, stream, line });
    });
  }
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    child.once('exit', (code, signal) => resolve({ code, signal }));
    child.once('error', () => resolve({ code: null, signal: null }));
  });
  return { child, taskArn: `arn:aws:ecs:local:000000000000:task/pgferry/${randomUUID()}`, exited, tail: () => tail };
}

/** What every task process of a run gets, before its own container environment. */
function taskProcessEnvironment(options: LocalRunOptions): NodeJS.ProcessEnv {
  return { ...process.env, ...options.taskEnvironment, [LOCAL_CALLBACK_ENV]: '1' };
}

function taskDescription(task: FargateTaskDefinition, run: TaskRun, code: number | null, signal: NodeJS.Signals | null) {
  const lastLine = run.tail().trim().split('\n').pop() ?? '';
  return {
    TaskArn: run.taskArn,
    TaskDefinitionArn: localTaskDefinitionArn(task),
    LastStatus: 'STOPPED',
    StopCode: 'EssentialContainerExited',
    StoppedReason: signal ? `Killed by ${signal}` : 'Essential container in task exited',
    Containers: [
      {
        Name: task.containerName,
        LastStatus: 'STOPPED',
        ExitCode: code ?? undefined,
        Reason: code === 0 ? undefined : lastLine.slice(0, 1000) || undefined,
      },
    ],
  };
}

/** Kills the task's process when the state's own time limit passes (the interpreter does not stop handlers). */
function timeLimit(state: AnyState, run: TaskRun): () => void {
  const seconds = typeof state.TimeoutSeconds === 'number' ? state.TimeoutSeconds : 60;
  const timer = setTimeout(() => kill(run.child), seconds * 1000);
  return () => clearTimeout(timer);
}

function syncTaskRunner(stateName: string, state: AnyState, task: FargateTaskDefinition, processes: TaskProcesses, options: LocalRunOptions) {
  return async (input: unknown) => {
    const run = await startTask(stateName, task, containerEnvironment(input as ContainerOverrides, task), processes, options);
    const clear = timeLimit(state, run);
    const { code, signal } = await run.exited;
    clear();
    const description = taskDescription(task, run, code, signal);
    if (code !== 0) throw stepError('States.TaskFailed', JSON.stringify(description));
    return description;
  };
}

function callbackTaskRunner(stateName: string, state: AnyState, task: FargateTaskDefinition, processes: TaskProcesses, options: LocalRunOptions) {
  return async (input: unknown) => {
    const token = randomUUID();
    const environment = containerEnvironment(input as ContainerOverrides, task);
    for (const [key, value] of Object.entries(environment)) if (value === TOKEN_MARKER) environment[key] = token;
    const run = await startTask(stateName, task, environment, processes, options);
    const clear = timeLimit(state, run);
    try {
      return await new Promise<unknown>((resolve, reject) => {
        run.child.on('message', (message: IpcCallbackMessage) => {
          if (message?.token !== token) return;
          if (message.pgferryTaskCallback === 'success') resolve(roundTrip(message.output));
          if (message.pgferryTaskCallback === 'failure') reject(stepError(message.error ?? 'States.TaskFailed', message.cause ?? ''));
        });
        void run.exited.then(({ code, signal }) =>
          reject(
            stepError(
              'States.TaskFailed',
              JSON.stringify({ ...taskDescription(task, run, code, signal), StoppedReason: 'The task exited before it reported its result' }),
            ),
          ),
        );
      });
    } finally {
      clear();
    }
  };
}

function findBy<T>(items: readonly T[], arnOf: (item: T) => string, arn: unknown, what: string, stateName: string): T {
  const item = items.find((candidate) => arnOf(candidate) === arn);
  if (!item) throw new WorkflowDefinitionError(`State ${stateName} names ${what} ${String(arn)}, which the local runner does not know.`);
  return item;
}

function buildHandlers(definition: StateMachineDefinition, wiring: Wiring, processes: TaskProcesses, options: LocalRunOptions) {
  const handlers: Record<string, (input: unknown) => Promise<unknown>> = {};
  for (const [name, state] of taskStates(definition.States as unknown as StateMap)) {
    if (handlers[name]) throw new WorkflowDefinitionError(`Two Task states are named ${name}; local handlers are keyed by state name.`);
    const parameters = state.Parameters ?? {};
    switch (state.Resource) {
      case 'arn:aws:states:::lambda:invoke':
        handlers[name] = lambdaInvoker(findBy(wiring.lambdas, localFunctionArn, parameters.FunctionName, 'function', name));
        break;
      case 'arn:aws:states:::ecs:runTask.sync':
        handlers[name] = syncTaskRunner(name, state, findBy(wiring.tasks, localTaskDefinitionArn, parameters.TaskDefinition, 'task definition', name), processes, options);
        break;
      case 'arn:aws:states:::ecs:runTask.waitForTaskToken':
        handlers[name] = callbackTaskRunner(name, state, findBy(wiring.tasks, localTaskDefinitionArn, parameters.TaskDefinition, 'task definition', name), processes, options);
        break;
      default:
        throw new WorkflowDefinitionError(`State ${name} uses resource ${state.Resource}, which the local runner cannot run.`);
    }
  }
  return handlers;
}

/**
 * aws-local-stepfunctions 3.0 does not implement HeartbeatSeconds (its validator accepts the
 * field, its interpreter never enforces it). The callback tasks heartbeat to Step Functions on
 * AWS only; locally they report over IPC and a dead child process fails its state at once. So
 * the interpreter gets the definition without the field, rather than one that promises a
 * heartbeat timeout it would not apply.
 */
function withoutHeartbeats(states: StateMap): void {
  for (const [, state] of taskStates(states)) {
    delete state.HeartbeatSeconds;
    delete state.HeartbeatSecondsPath;
  }
}

export async function loadLocalDefinition(options: Pick<LocalRunOptions, 'definitionFile' | 'lambdas' | 'tasks'> = {}) {
  const wiring: Wiring = { lambdas: options.lambdas ?? lambdaFunctions, tasks: options.tasks ?? fargateTasks };
  const text = await readFile(options.definitionFile ?? workflowFile, 'utf8');
  const definition = JSON.parse(substituteLocally(text, wiring)) as StateMachineDefinition;
  withoutHeartbeats(definition.States as unknown as StateMap);
  return { definition, wiring };
}

/**
 * How the interpreter validates the definition: a file given with `definitionFile` is checked
 * at every run; the shipped workflow is checked by its test (test/unit/runner.test.ts) with the
 * same validator, which costs about 150 ms of schema compiling that every run would pay.
 */
export function workflowValidation(options: Pick<LocalRunOptions, 'definitionFile'> = {}) {
  return options.definitionFile ? { checkArn: false } : { noValidate: true };
}

/**
 * A stopped or timed-out execution never reaches its Cleanup state (on AWS neither: an
 * EventBridge rule on the execution's status invokes the Cleanup function). Locally the runner
 * invokes it the same way, so the slot and the fence do not outlive the run.
 */
async function cleanUpStoppedRun(definition: StateMachineDefinition, wiring: Wiring, spec: unknown, execution: string, status: 'ABORTED' | 'TIMED_OUT') {
  const state = (definition.States as unknown as StateMap).Cleanup;
  if (!state?.Parameters) return;
  const cleanup = lambdaInvoker(findBy(wiring.lambdas, localFunctionArn, state.Parameters.FunctionName, 'function', 'Cleanup'));
  const error = { Error: status === 'ABORTED' ? 'pgferry.Stopped' : 'States.Timeout', Cause: `The run was ${status === 'ABORTED' ? 'stopped' : 'timed out'}.` };
  await cleanup({ Payload: { spec, error, execution } }).catch(() => undefined);
}

/**
 * How many task processes to have warm when the run's load starts: its copy workers beside the
 * task that holds the snapshot (ExportSnapshot, or StartReplication, which runs on after it).
 * No more workers than cores: the ones beyond would wait for a core anyway, and warming them
 * would take it from the states before the load.
 */
function tasksStartedAtOnce(spec: unknown): number {
  const { mode, fullLoad } = (spec ?? {}) as { mode?: string; fullLoad?: { parallelism?: number } };
  if (mode === 'cdc' || typeof fullLoad?.parallelism !== 'number') return 1;
  return Math.min(fullLoad.parallelism, availableParallelism()) + 1;
}

/** Runs the workflow to its end. Never throws for a failed execution: the result says how it ended. */
export async function runLocalWorkflow(input: unknown, options: LocalRunOptions = {}): Promise<LocalRunResult> {
  const { definition, wiring } = await loadLocalDefinition(options);
  const processes = new TaskProcesses(taskProcessEnvironment(options));
  const stateMachine = new StateMachine(definition, { validationOptions: workflowValidation(options) });
  const handlers = buildHandlers(definition, wiring, processes, options);
  // Bundled while the first states run; a bundling error surfaces when its task starts.
  const bundles = wiring.tasks.map((task) => processes.bundle(task));
  for (const bundle of bundles) bundle.catch(() => undefined);
  if (bundles.length > 0) void warmLoader(bundles).then((loader) => processes.keepSpare(loader), () => undefined);
  const executionId = `local:${randomUUID()}`;
  const execution = stateMachine.run(input as never, {
    overrides: {
      taskResourceLocalHandlers: handlers as never,
      waitTimeOverrides: options.waitTimeOverrides,
      retryIntervalOverrides: options.retryIntervalOverrides,
    },
    // $$.Execution.Id names the run in the control schema, as the execution ARN does on AWS.
    context: { Execution: { Id: executionId, Input: input as never, StartTime: new Date().toISOString() }, Task: { Token: TOKEN_MARKER } },
  });
  const onAbort = () => {
    execution.abort();
    processes.killAll();
  };
  options.signal?.addEventListener('abort', onAbort, { once: true });
  const killOnExit = () => processes.killAll();
  process.once('exit', killOnExit);

  let ending: LocalRunResult | undefined;
  let validatedSpec: unknown;
  const events = (async () => {
    for await (const event of execution.eventLogs) {
      options.onEvent?.(event);
      if (event.type === 'StateExited' && event.state.name === 'ValidateSpec') {
        validatedSpec = (event.state.output as { spec?: unknown }).spec;
        processes.prepareFor(tasksStartedAtOnce(validatedSpec));
      }
      if (event.type === 'ExecutionFailed') ending = { status: 'FAILED', error: event.Error, cause: String(event.Cause ?? '') };
      if (event.type === 'ExecutionAborted') ending = { status: 'ABORTED' };
      if (event.type === 'ExecutionTimeout') ending = { status: 'TIMED_OUT' };
    }
  })();
  try {
    const output = await execution.result;
    await events;
    return ending ?? { status: 'SUCCEEDED', output };
  } catch (error) {
    await events;
    const result = ending ?? { status: 'FAILED', error: (error as Error).name, cause: (error as Error).message };
    if ((result.status === 'ABORTED' || result.status === 'TIMED_OUT') && validatedSpec) {
      processes.killAll();
      await cleanUpStoppedRun(definition, wiring, validatedSpec, executionId, result.status);
    }
    return result;
  } finally {
    options.signal?.removeEventListener('abort', onAbort);
    process.off('exit', killOnExit);
    processes.killAll();
  }
}

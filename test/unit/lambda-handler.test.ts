import { Logger } from '@aws-lambda-powertools/logger';
import { Metrics } from '@aws-lambda-powertools/metrics';
import { GetSecretValueCommand, SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import { clearCache } from '@middy/util';
import type { Context } from 'aws-lambda';
import { mockClient } from 'aws-sdk-client-mock';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { z } from 'zod';
import { ConnectionError, parseCredentials, withEndpoint } from '../../engine/connect/index.js';
import { PgferryError } from '../../engine/errors.js';
import { lambdaHandler, specEvent, specMigration, specSecrets, type LambdaHandlerOptions } from '../../lambdas/handler.js';
import { SecretsManagerCache } from '../../platform/secrets/middy.js';
import { failureOf } from '../support/failure.js';

const PASSWORD = 'S3cr3t-p@ss/wörd';
const arn = (name: string) => `arn:aws:secretsmanager:eu-west-1:123456789012:secret:pgferry/${name}-AbCdEf`;
const SOURCE = arn('source');
const TARGET = arn('target');
const OTHER_TARGET = arn('other-target');
const secretOf = (host: string) => JSON.stringify({ host, port: 5432, username: 'migrator', password: PASSWORD, dbname: 'app', engine: 'postgres' });

const spec = (overrides: Record<string, unknown> = {}) => ({
  name: 'orders-move',
  description: 'do-not-log-this-description',
  source: { secret: SOURCE },
  target: { secret: TARGET },
  ...overrides,
});

/** A context like the local runner's: a few fields, no more. */
const runnerContext = (name = 'pgferry-Test') =>
  ({
    functionName: name,
    functionVersion: '$LATEST',
    awsRequestId: 'req-1',
    getRemainingTimeInMillis: () => 60_000,
    callbackWaitsForEmptyEventLoop: false,
  }) as unknown as Context;

const secretsManager = mockClient(SecretsManagerClient);
let stdout: string[];

beforeEach(() => {
  stdout = [];
  // Powertools writes INFO lines and EMF to stdout, WARN and ERROR lines to stderr.
  for (const stream of [process.stdout, process.stderr]) {
    vi.spyOn(stream, 'write').mockImplementation((chunk: string | Uint8Array) => {
      stdout.push(String(chunk));
      return true;
    });
  }
  secretsManager.on(GetSecretValueCommand, { SecretId: SOURCE }).resolves({ SecretString: secretOf('source.internal') });
  secretsManager.on(GetSecretValueCommand, { SecretId: TARGET }).resolves({ SecretString: secretOf('target.internal') });
  secretsManager.on(GetSecretValueCommand, { SecretId: OTHER_TARGET }).resolves({ SecretString: secretOf('other.internal') });
});

afterEach(() => {
  vi.restoreAllMocks();
  vi.unstubAllEnvs();
  secretsManager.reset();
  clearCache();
});

const fetchedIds = () => secretsManager.commandCalls(GetSecretValueCommand).map((call) => call.args[0].input.SecretId);
const jsonLines = () =>
  stdout
    .join('')
    .split('\n')
    .filter((line) => line.startsWith('{'))
    .map((line) => JSON.parse(line) as Record<string, unknown>);

function testOptions(extra: Partial<LambdaHandlerOptions> = {}): LambdaHandlerOptions {
  return { logger: new Logger({ serviceName: 'pgferry-test', logLevel: 'INFO' }), metrics: null, secretsCache: new SecretsManagerCache(), ...extra };
}

/** A step like the real ones: reads both sides' credentials and says what it found. */
function credentialsStep(options = testOptions()) {
  const handler = vi.fn(async ({ spec }: z.output<typeof specEvent>, { secrets }: { secrets: { getSecretString(ref: string): Promise<string> } }) => {
    const source = parseCredentials(spec.source.secret, await secrets.getSecretString(spec.source.secret));
    const target = parseCredentials(spec.target.secret, await secrets.getSecretString(spec.target.secret));
    return { source: source.host, target: target.host, passwordsMatch: source.password === PASSWORD && target.password === PASSWORD, mode: spec.mode };
  });
  return { handler, lambda: lambdaHandler({ name: 'TestStep', input: specEvent, secrets: specSecrets, migration: specMigration, handler }, options) };
}

describe('secrets from Secrets Manager', () => {
  it('fetches each ARN once across invocations, and JSON secrets round-trip to credentials', async () => {
    const { lambda } = credentialsStep();
    const first = await lambda({ spec: spec() }, runnerContext());
    expect(first).toEqual({ source: 'source.internal', target: 'target.internal', passwordsMatch: true, mode: 'full' });
    await lambda({ spec: spec() }, runnerContext());
    expect(fetchedIds().sort()).toEqual([SOURCE, TARGET]);

    // Another target: only the new ARN is fetched.
    const other = await lambda({ spec: spec({ target: { secret: OTHER_TARGET } }) }, runnerContext());
    expect(other).toMatchObject({ source: 'source.internal', target: 'other.internal' });
    expect(fetchedIds().sort()).toEqual([OTHER_TARGET, SOURCE, TARGET]);
  });

  it('reads a secret again once the cache time has passed', async () => {
    let now = 1_000_000;
    const { lambda } = credentialsStep(testOptions({ secretsCache: new SecretsManagerCache({ cacheMs: 300_000, now: () => now }) }));
    await lambda({ spec: spec() }, runnerContext());
    now += 299_000;
    await lambda({ spec: spec() }, runnerContext());
    expect(fetchedIds()).toHaveLength(2);
    now += 1_000;
    await lambda({ spec: spec() }, runnerContext());
    expect(fetchedIds()).toHaveLength(4);
  });

  it('turns AccessDenied into a pgferry error naming the secret, never its value, and does not cache the failure', async () => {
    secretsManager.reset();
    secretsManager.on(GetSecretValueCommand, { SecretId: SOURCE }).resolves({ SecretString: secretOf('source.internal') });
    secretsManager
      .on(GetSecretValueCommand, { SecretId: TARGET })
      .rejectsOnce(Object.assign(new Error(`User is not authorized to access ${TARGET}`), { name: 'AccessDeniedException' }))
      .resolves({ SecretString: secretOf('target.internal') });
    const { lambda } = credentialsStep();
    const error = await failureOf(lambda({ spec: spec() }, runnerContext()));
    expect(error).toBeInstanceOf(PgferryError);
    expect(error.name).toBe('pgferry.SecretInvalid');
    expect(error.message).toBe(`Secret ${TARGET}: cannot be read from Secrets Manager (AccessDeniedException): check that it exists and that the role may read it`);
    expect(stdout.join('')).not.toContain(PASSWORD);

    // Once the role may read it, the next invocation fetches it (the source stays cached).
    expect(await lambda({ spec: spec() }, runnerContext())).toMatchObject({ target: 'target.internal' });
    expect(fetchedIds().filter((id) => id === TARGET)).toHaveLength(2);
    expect(fetchedIds().filter((id) => id === SOURCE)).toHaveLength(1);
  });

  it('reads a secret again after the database refused its password (it may have been rotated)', async () => {
    let refuse = true;
    const lambda = lambdaHandler(
      {
        name: 'TestStep',
        input: specEvent,
        secrets: specSecrets,
        handler: async ({ spec }, { secrets }) => {
          await secrets.getSecretString(spec.target.secret);
          if (refuse) throw new ConnectionError('Cannot connect to the target: password authentication failed', '28P01');
          return 'ok';
        },
      },
      testOptions(),
    );
    await expect(lambda({ spec: spec() }, runnerContext())).rejects.toThrow(/password authentication failed/);
    refuse = false;
    expect(await lambda({ spec: spec() }, runnerContext())).toBe('ok');
    expect(fetchedIds().filter((id) => id === TARGET)).toHaveLength(2);
  });

  it('reads a rotated password within the same invocation: a refused login fetches the secret again, past the cache', async () => {
    let accepted = PASSWORD;
    const lambda = lambdaHandler(
      {
        name: 'TestStep',
        input: specEvent,
        secrets: specSecrets,
        handler: ({ spec }, { secrets }) =>
          withEndpoint('target', spec.target, secrets, async (endpoint) => {
            if (endpoint.credentials.password !== accepted) throw new ConnectionError('Cannot connect to the target: password authentication failed', '28P01');
            return endpoint.credentials.host;
          }),
      },
      testOptions(),
    );
    expect(await lambda({ spec: spec() }, runnerContext())).toBe('target.internal');
    // Rotated while the secret is cached.
    accepted = 'rotated-password';
    secretsManager.on(GetSecretValueCommand, { SecretId: TARGET }).resolves({
      SecretString: JSON.stringify({ host: 'rotated.internal', port: 5432, username: 'migrator', password: accepted, dbname: 'app' }),
    });
    expect(await lambda({ spec: spec() }, runnerContext())).toBe('rotated.internal');
    expect(fetchedIds().filter((id) => id === TARGET)).toHaveLength(2);
  });

  it('serves a fresh read of a cached secret from Secrets Manager, and caches what it read', async () => {
    const options = testOptions();
    const reads: string[] = [];
    const lambda = lambdaHandler(
      {
        name: 'TestStep',
        input: specEvent,
        secrets: specSecrets,
        handler: async ({ spec }, { secrets }) => {
          reads.push(parseCredentials(TARGET, await secrets.getSecretString(spec.target.secret)).host);
          reads.push(parseCredentials(TARGET, await secrets.getSecretString(spec.target.secret, { fresh: true })).host);
          return 'ok';
        },
      },
      options,
    );
    await lambda({ spec: spec() }, runnerContext());
    expect(reads).toEqual(['target.internal', 'target.internal']);
    expect(fetchedIds().filter((id) => id === TARGET)).toHaveLength(2);
    secretsManager.on(GetSecretValueCommand, { SecretId: TARGET }).resolves({ SecretString: secretOf('rotated.internal') });
    await lambda({ spec: spec() }, runnerContext());
    // The cached copy first, then the rotated one, which the next invocation gets from the cache.
    expect(reads.slice(2)).toEqual(['target.internal', 'rotated.internal']);
    expect(fetchedIds().filter((id) => id === TARGET)).toHaveLength(3);
    reads.length = 0;
    await lambdaHandler({ name: 'Peek', input: specEvent, secrets: specSecrets, handler: async ({ spec }, { secrets }) => {
      reads.push(parseCredentials(TARGET, await secrets.getSecretString(spec.target.secret)).host);
    } }, options)({ spec: spec() }, runnerContext());
    expect(reads).toEqual(['rotated.internal']);
    expect(fetchedIds().filter((id) => id === TARGET)).toHaveLength(3);
  });

  it('leaves file: and env: references to the default provider, without calling Secrets Manager', async () => {
    vi.stubEnv('PGFERRY_TEST_SOURCE_DB', secretOf('env-source'));
    vi.stubEnv('PGFERRY_TEST_TARGET_DB', `postgres://migrator:${encodeURIComponent(PASSWORD)}@env-target:5432/app`);
    const { lambda } = credentialsStep();
    const result = await lambda({ spec: spec({ source: { secret: 'env:PGFERRY_TEST_SOURCE_DB' }, target: { secret: 'env:PGFERRY_TEST_TARGET_DB' } }) }, runnerContext());
    expect(result).toMatchObject({ source: 'env-source', target: 'env-target', passwordsMatch: true });
    expect(fetchedIds()).toEqual([]);
  });
});

describe('input validation', () => {
  it('lists every problem of the event with its path as pgferry.InvalidInput, before any secret is read', async () => {
    const { lambda, handler } = credentialsStep();
    const error = await failureOf(lambda({ spec: { name: 'x', source: { secret: 'vault:nope' }, mode: 'ful' } }, runnerContext()));
    expect(error).toBeInstanceOf(PgferryError);
    expect(error.name).toBe('pgferry.InvalidInput');
    expect(error.message.split('\n')).toEqual([
      'The input of TestStep has 4 problems:',
      '  - spec.name: must be 4–50 characters: a letter first, then letters, digits, "-" or "_"',
      '  - spec.mode: must be one of "full", "full+cdc", "cdc" (got "ful")',
      '  - spec.source.secret: must be a Secrets Manager ARN (arn:aws:secretsmanager:…), "env:NAME" or "file:PATH"',
      '  - spec.target: is required',
    ]);
    expect(handler).not.toHaveBeenCalled();
    expect(fetchedIds()).toEqual([]);
  });

  it.each([null, 'spec', 42])('refuses the non-object event %j', async (event) => {
    const { lambda } = credentialsStep();
    await expect(lambda(event, runnerContext())).rejects.toMatchObject({
      name: 'pgferry.InvalidInput',
      message: 'The input of TestStep has 1 problem:\n  - (root): the input must be a JSON object',
    });
  });

  it('names a missing event field', async () => {
    const lambda = lambdaHandler({ name: 'Thing', input: z.object({ spec: z.unknown(), count: z.int() }), handler: async () => 1 }, testOptions());
    await expect(lambda({ spec: {} }, runnerContext())).rejects.toMatchObject({ name: 'pgferry.InvalidInput', message: expect.stringContaining('  - count: is required') });
  });
});

describe('error names', () => {
  const failing = (error: unknown) => lambdaHandler({ name: 'Failing', input: z.unknown(), handler: async () => Promise.reject(error) }, testOptions());

  it('keeps pgferry error names, which the workflow matches on', async () => {
    await expect(failing(new PgferryError('pgferry.Transient', 'lost the connection'))({}, runnerContext())).rejects.toMatchObject({
      name: 'pgferry.Transient',
      message: 'lost the connection',
    });
  });

  it('turns anything else into pgferry.Internal with its message', async () => {
    const error = await failureOf(failing(new TypeError("Cannot read properties of undefined (reading 'x')"))({}, runnerContext()));
    expect(error).toBeInstanceOf(PgferryError);
    expect(error).toMatchObject({ name: 'pgferry.Internal', message: "Cannot read properties of undefined (reading 'x')" });
    expect((error as Error).cause).toBeInstanceOf(TypeError);
    await expect(failing('a thrown string')({}, runnerContext())).rejects.toMatchObject({ name: 'pgferry.Internal', message: 'a thrown string' });
  });

  it('works without any Lambda context (called directly, as a plain function)', async () => {
    const withoutContext = (handler: unknown) => handler as (event: unknown) => Promise<unknown>;
    await expect(withoutContext(failing(new Error('boom')))({})).rejects.toMatchObject({ name: 'pgferry.Internal', message: 'boom' });
    const plain = lambdaHandler({ name: 'Plain', input: z.object({ n: z.number() }), handler: async (event) => ({ twice: event.n * 2 }) }, testOptions());
    expect(await withoutContext(plain)({ n: 21 })).toEqual({ twice: 42 });
  });
});

describe('logs and metrics', () => {
  it('logs structured JSON with the step, the function and the migration, never the event or a secret', async () => {
    const { lambda } = credentialsStep();
    await lambda({ spec: spec() }, runnerContext('pgferry-Precheck'));
    await lambda({ spec: spec({ source: { secret: 'vault:bad' } }) }, runnerContext('pgferry-Precheck')).catch(() => undefined);
    const logs = jsonLines();
    expect(logs.map((l) => [l.level, l.message])).toEqual([
      ['INFO', 'TestStep started'],
      ['INFO', 'TestStep finished'],
      ['ERROR', 'TestStep failed'],
    ]);
    expect(logs[0]).toMatchObject({ service: 'pgferry-test', step: 'TestStep', migration: 'orders-move', function_name: 'pgferry-Precheck', function_request_id: 'req-1' });
    expect(logs[2]).toMatchObject({ step: 'TestStep', error: { name: 'pgferry.InvalidInput' } });
    const all = stdout.join('');
    expect(all).not.toContain(PASSWORD);
    expect(all).not.toContain('do-not-log-this-description');
    expect(all).not.toContain(SOURCE);
  });

  it('publishes the cold-start metric through Powertools Metrics (EMF)', async () => {
    vi.stubEnv('AWS_LAMBDA_INITIALIZATION_TYPE', 'on-demand');
    const metrics = new Metrics({ namespace: 'pgferry', serviceName: 'pgferry-test' });
    const lambda = lambdaHandler({ name: 'Quick', input: z.unknown(), handler: async () => 'ok' }, testOptions({ metrics }));
    await lambda({}, runnerContext('pgferry-Quick'));
    await lambda({}, runnerContext('pgferry-Quick'));
    const emf = jsonLines().filter((line) => '_aws' in line);
    expect(emf).toHaveLength(1);
    expect(emf[0]).toMatchObject({
      _aws: { CloudWatchMetrics: [{ Namespace: 'pgferry', Dimensions: [['service', 'function_name']], Metrics: [{ Name: 'ColdStart', Unit: 'Count' }] }] },
      service: 'pgferry-test',
      function_name: 'pgferry-Quick',
      ColdStart: 1,
    });
  });
});

describe('the Lambdas of the workflow', () => {
  it('ValidateSpec fills in the defaults, and reports spec problems as SpecInvalid', async () => {
    const { handler } = await import('../../lambdas/validate-spec.js');
    const result = (await handler({ spec: spec() }, runnerContext())) as { spec: { mode: string; alerts: { lagThresholdSeconds: number } } };
    expect(result.spec).toMatchObject({ mode: 'full', alerts: { lagThresholdSeconds: 300 } });
    await expect(handler({ spec: spec({ mode: 'ful' }) }, runnerContext())).rejects.toMatchObject({
      name: 'SpecInvalid',
      message: expect.stringContaining('  - mode: '),
    });
    expect(fetchedIds()).toEqual([]);
  });

  it('DescribeFailure describes whatever error it gets', async () => {
    const { handler } = await import('../../lambdas/describe-failure.js');
    const cause = JSON.stringify({ errorType: 'pgferry.ConnectionFailed', errorMessage: 'Cannot connect to the source' });
    expect(await handler({ error: { Error: 'pgferry.ConnectionFailed', Cause: cause } }, runnerContext())).toEqual({
      error: 'pgferry.ConnectionFailed',
      cause: 'Cannot connect to the source',
    });
    expect(await handler({}, runnerContext())).toEqual({ error: 'pgferry.Failed', cause: 'The migration failed with pgferry.Failed.' });
    expect(await handler({ error: { Error: 'States.HeartbeatTimeout', Cause: null } }, runnerContext())).toEqual({
      error: 'States.HeartbeatTimeout',
      cause: expect.stringContaining('sent no heartbeat for longer than the state\'s HeartbeatSeconds'),
    });
  });

  it('Cleanup from EventBridge leaves an execution without a valid spec alone, reading no secret', async () => {
    const { handler } = await import('../../lambdas/cleanup.js');
    const event = {
      'detail-type': 'Step Functions Execution Status Change',
      source: 'aws.states',
      detail: { status: 'ABORTED', executionArn: 'arn:aws:states:eu-west-1:123456789012:execution:pgferry:run-1', input: '{"name": 1}' },
    };
    expect(await handler(event, runnerContext())).toEqual({
      cleaned: false,
      reason: 'execution arn:aws:states:eu-west-1:123456789012:execution:pgferry:run-1 had no valid spec as input: it cannot have created anything',
    });
    expect(fetchedIds()).toEqual([]);
    await expect(handler({ spec: spec() }, runnerContext())).rejects.toMatchObject({ name: 'pgferry.InvalidInput', message: expect.stringContaining('  - error: is required') });
  });

  it('Operator validates the request and reads only the target secret', async () => {
    secretsManager.reset();
    secretsManager.on(GetSecretValueCommand, { SecretId: TARGET }).resolves({
      SecretString: JSON.stringify({ host: '127.0.0.1', port: 1, username: 'migrator', password: PASSWORD, dbname: 'app' }),
    });
    const { handler } = await import('../../lambdas/operate.js');
    await expect(handler({ action: 'drop', spec: spec() }, runnerContext())).rejects.toMatchObject({
      name: 'pgferry.InvalidInput',
      message: expect.stringContaining('  - action: must be one of "status", "cutover", "cleanup", "fallback", "finish", "throttle" (got "drop")'),
    });
    const error = await failureOf(handler({ action: 'status', spec: spec() }, runnerContext()));
    expect(error).toMatchObject({ name: 'pgferry.Unreachable' });
    expect(error.message).toContain('127.0.0.1:1/app');
    expect(error.message).not.toContain(PASSWORD);
    expect(fetchedIds()).toEqual([TARGET]);
  });
});

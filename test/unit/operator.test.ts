import { GetSecretValueCommand, SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import { clearCache } from '@middy/util';
import type { Context } from 'aws-lambda';
import { mockClient } from 'aws-sdk-client-mock';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import type { CleanupResult } from '../../engine/steps/cleanup.js';

/** The Operator's engine calls, so that no database is needed: what it passes them is what is tested. */
const engine = vi.hoisted(() => ({
  cleanupStep: vi.fn(),
  readMigrationStatus: vi.fn(),
  requestMigrationCutover: vi.fn(),
  requestMigrationThrottle: vi.fn(),
  connectSide: vi.fn(),
}));
vi.mock('../../engine/steps/cleanup.js', () => ({ cleanupStep: engine.cleanupStep }));
vi.mock('../../engine/status.js', () => ({ readMigrationStatus: engine.readMigrationStatus }));
vi.mock('../../engine/cutover/request.js', () => ({ requestMigrationCutover: engine.requestMigrationCutover }));
vi.mock('../../engine/flow/throttle.js', async (importOriginal) => ({
  ...(await importOriginal<typeof import('../../engine/flow/throttle.js')>()),
  requestMigrationThrottle: engine.requestMigrationThrottle,
}));
vi.mock('../../engine/connect/index.js', async (importOriginal) => ({
  ...(await importOriginal<typeof import('../../engine/connect/index.js')>()),
  connectSide: engine.connectSide,
}));

const { handler } = await import('../../lambdas/operate.js');

const arn = (name: string) => `arn:aws:secretsmanager:eu-west-1:123456789012:secret:pgferry/${name}-AbCdEf`;
const SOURCE = arn('source');
const TARGET = arn('target');
const EXECUTION = 'arn:aws:states:eu-west-1:123456789012:execution:PgferryMigration:orders-move-20261120T093015Z';
const secretOf = (host: string) => JSON.stringify({ host, port: 5432, username: 'migrator', password: 'pw', dbname: 'app' });
const spec = { name: 'orders-move', mode: 'full+cdc', source: { secret: SOURCE }, target: { secret: TARGET } };
const context = { functionName: 'Operator', awsRequestId: 'req-1', getRemainingTimeInMillis: () => 60_000 } as unknown as Context;

const secretsManager = mockClient(SecretsManagerClient);
const fetchedIds = () => secretsManager.commandCalls(GetSecretValueCommand).map((call) => call.args[0].input.SecretId);

beforeEach(() => {
  vi.spyOn(process.stdout, 'write').mockImplementation(() => true);
  vi.spyOn(process.stderr, 'write').mockImplementation(() => true);
  secretsManager.on(GetSecretValueCommand, { SecretId: SOURCE }).resolves({ SecretString: secretOf('source.internal') });
  secretsManager.on(GetSecretValueCommand, { SecretId: TARGET }).resolves({ SecretString: secretOf('target.internal') });
});

afterEach(() => {
  vi.restoreAllMocks();
  for (const fn of Object.values(engine)) fn.mockReset();
  secretsManager.reset();
  clearCache();
});

describe('Operator cleanup (pgferry stop of an execution that has ended)', () => {
  it("cleans up only the given execution's run, as stopped, with both sides' secrets", async () => {
    const result: CleanupResult = { cleaned: true, paused: false, unfenced: false, slotDropped: true, publicationDropped: true };
    engine.cleanupStep.mockImplementation(async (_spec, secrets: { getSecretString: (ref: string) => Promise<string> }) => {
      // The slot is on the source, the control schema on the target: both must be readable.
      expect(JSON.parse(await secrets.getSecretString(SOURCE)).host).toBe('source.internal');
      expect(JSON.parse(await secrets.getSecretString(TARGET)).host).toBe('target.internal');
      return result;
    });

    expect(await handler({ action: 'cleanup', spec, execution: EXECUTION }, context)).toEqual({ action: 'cleanup', result });

    expect(engine.cleanupStep).toHaveBeenCalledTimes(1);
    const [normalized, , failure, execution] = engine.cleanupStep.mock.calls[0]!;
    expect(normalized).toMatchObject({ name: 'orders-move', cdc: { keepSlotOnFailure: false } });
    expect(failure).toEqual({ Error: 'pgferry.Stopped', Cause: 'Stopped with pgferry stop' });
    expect(execution).toBe(EXECUTION);
    expect(fetchedIds().sort()).toEqual([SOURCE, TARGET].sort());
  });

  it('refuses a cleanup without an execution, which would end whatever run is registered', async () => {
    await expect(handler({ action: 'cleanup', spec }, context)).rejects.toMatchObject({
      name: 'pgferry.InvalidInput',
      message: expect.stringContaining('  - execution: is required for the cleanup action'),
    });
    expect(engine.cleanupStep).not.toHaveBeenCalled();
    expect(fetchedIds()).toEqual([]);
  });

  it('still reads only the target secret for status and cutover', async () => {
    const end = vi.fn(async () => undefined);
    engine.connectSide.mockResolvedValue({ end });
    engine.readMigrationStatus.mockResolvedValue(undefined);
    engine.requestMigrationCutover.mockResolvedValue({ requested: false, reason: 'not replicating' });

    expect(await handler({ action: 'status', spec }, context)).toEqual({ action: 'status', status: null });
    expect(await handler({ action: 'cutover', spec }, context)).toEqual({ action: 'cutover', result: { requested: false, reason: 'not replicating' } });

    expect(new Set(fetchedIds())).toEqual(new Set([TARGET]));
    expect(engine.connectSide.mock.calls.map((call) => call[0])).toEqual(['target', 'target']);
    expect(end).toHaveBeenCalledTimes(2);
    expect(engine.cleanupStep).not.toHaveBeenCalled();
  });
});

describe('Operator throttle (pgferry throttle EXECUTION_ARN)', () => {
  it('passes the new limits to the run on the target, reading only the target secret', async () => {
    const end = vi.fn(async () => undefined);
    engine.connectSide.mockResolvedValue({ end });
    engine.requestMigrationThrottle.mockResolvedValue({ applied: false, reason: 'has ended' });

    expect(await handler({ action: 'throttle', spec, throttle: { rowsPerSecond: 500, phases: ['cdc'] } }, context)).toEqual({
      action: 'throttle',
      result: { applied: false, reason: 'has ended' },
    });

    const [, normalized, change] = engine.requestMigrationThrottle.mock.calls[0]!;
    expect(normalized).toMatchObject({ name: 'orders-move' });
    expect(change).toEqual({ phases: ['cdc'], rowsPerSecond: 500 });
    expect(fetchedIds()).toEqual([TARGET]);
    expect(end).toHaveBeenCalledTimes(1);
  });

  it('refuses a negative limit before touching the database, naming the field', async () => {
    await expect(handler({ action: 'throttle', spec, throttle: { rowsPerSecond: -1 } }, context)).rejects.toMatchObject({
      name: 'pgferry.InvalidInput',
      message: expect.stringContaining('throttle.rowsPerSecond: must be a whole number per second'),
    });
    expect(engine.requestMigrationThrottle).not.toHaveBeenCalled();
    expect(fetchedIds()).toEqual([]);
  });
});

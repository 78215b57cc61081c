/**
 * Outages of a side: how failures are classified, what a step ends with inside and past the
 * retry window, the workflow's Retry of pgferry.Unreachable, and the keepalive settings of
 * every kind of connection.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Logger } from '@aws-lambda-powertools/logger';
import type { Context } from 'aws-lambda';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { z } from 'zod';
import {
  clientConfig,
  connect,
  DatabaseCredentials,
  isAuthenticationFailure,
  isConnectionFailure,
  KEEPALIVE_IDLE_MS,
  UnreachableError,
  withinRetryWindow,
  type Endpoint,
} from '../../engine/connect/index.js';
import { ChangeStream } from '../../engine/cdc/stream.js';
import { lambdaHandler } from '../../lambdas/handler.js';
import { runLocalWorkflow, type LocalRunOptions } from '../../local/runner/index.js';
import { SecretsManagerCache } from '../../platform/secrets/middy.js';
import { migrationDefinition } from '../../state-machines/definition.js';
import { STATE_ENTERED_TIME_FIELD, unreachableRetry } from '../../state-machines/steps.js';
import { redoingOnOutage, type TaskContext } from '../../tasks/task.js';
import type { MigrationSpec } from '../../engine/spec/index.js';
import { failureOf } from '../support/failure.js';

const PASSWORD = 'never-in-a-message-9f1';
const endpoint = (port = 1): Endpoint => ({
  side: 'target',
  credentials: new DatabaseCredentials('file:/secrets/target.json', '127.0.0.1', port, 'migrator', PASSWORD, 'app'),
  database: 'app',
  sslmode: 'disable',
});
const pgError = (code: string, message = 'x') => Object.assign(new Error(message), { code, severity: 'FATAL' });

describe('classifying failures', () => {
  it('tells a side out of reach from a refused login and from an error of the request', () => {
    for (const error of [
      pgError('ECONNREFUSED', 'connect ECONNREFUSED 127.0.0.1:5432'),
      pgError('ECONNRESET', 'read ECONNRESET'),
      pgError('57P01', 'terminating connection due to administrator command'),
      pgError('57P02'),
      pgError('57P03', 'the database system is starting up'),
      new Error('Connection terminated unexpectedly'),
      new Error('Connection terminated due to connection timeout'),
      new Error('timeout expired'),
      new UnreachableError('target', 'Cannot reach the target'),
    ]) {
      expect(isConnectionFailure(error), error.message).toBe(true);
    }
    for (const error of [pgError('28P01'), pgError('28000'), pgError('42P01'), pgError('23505'), new Error('syntax error')]) {
      expect(isConnectionFailure(error), (error as { code?: string }).code).toBe(false);
    }
    expect(isAuthenticationFailure(pgError('28P01'))).toBe(true);
    expect(isAuthenticationFailure(pgError('28000'))).toBe(true);
    expect(isAuthenticationFailure(pgError('57P03'))).toBe(false);
  });

  it('a connect to a server that is not there ends with pgferry.Unreachable naming the side and host, never the password', async () => {
    const error = await failureOf(connect(endpoint(1), { retryWindowMs: 0 }));
    expect(error).toBeInstanceOf(UnreachableError);
    expect(error).toMatchObject({ name: 'pgferry.Unreachable', side: 'target', code: 'ECONNREFUSED' });
    expect(error.message).toContain('Cannot reach the target (127.0.0.1:1/app as migrator)');
    expect(error.message).not.toContain(PASSWORD);
  });
});

describe('the retry window', () => {
  const unreachable = new UnreachableError('target', 'Cannot reach the target (db:5432/app as migrator): connect ECONNREFUSED.');
  const minutesAgo = (minutes: number) => new Date(Date.now() - minutes * 60_000);

  it('keeps pgferry.Unreachable within the window, and ends the wait past it', () => {
    expect(withinRetryWindow(unreachable, minutesAgo(1), 2)).toBe(unreachable);
    const past = withinRetryWindow(unreachable, minutesAgo(3), 2) as Error;
    expect(past.name).toBe('pgferry.ConnectionFailed');
    expect(past.message).toMatch(/^Cannot reach the target \(db:5432\/app as migrator\): connect ECONNREFUSED\. It has been retried for 3 minute\(s\), longer than cdc\.retryWindowMinutes \(2\)/);
    const other = new Error('relation does not exist');
    expect(withinRetryWindow(other, minutesAgo(3), 2)).toBe(other);
    // Without a time or a window (an invocation outside the workflow) the error stays as it is.
    expect(withinRetryWindow(unreachable, undefined, 2)).toBe(unreachable);
  });

  it('a Lambda step ends with pgferry.Unreachable while the state is within the window, pgferry.ConnectionFailed past it', async () => {
    const lambda = lambdaHandler(
      {
        name: 'TestStep',
        input: z.object({ spec: z.object({ cdc: z.object({ retryWindowMinutes: z.number() }) }) }),
        handler: async () => {
          throw unreachable;
        },
      },
      { logger: new Logger({ logLevel: 'SILENT' }), metrics: null, secretsCache: new SecretsManagerCache() },
    );
    const event = (minutes: number) => ({ spec: { cdc: { retryWindowMinutes: 2 } }, [STATE_ENTERED_TIME_FIELD]: minutesAgo(minutes).toISOString() });
    expect(await failureOf(lambda(event(1), {} as Context))).toMatchObject({ name: 'pgferry.Unreachable' });
    expect(await failureOf(lambda(event(2.5), {} as Context))).toMatchObject({ name: 'pgferry.ConnectionFailed', message: expect.stringContaining('longer than cdc.retryWindowMinutes (2)') });
  });
});

/** The Lambda Task states of the workflow. */
function lambdaStates(): [string, Record<string, unknown>][] {
  return Object.entries(migrationDefinition.States as Record<string, Record<string, unknown>>).filter(([, state]) => state.Resource === 'arn:aws:states:::lambda:invoke');
}

describe('the workflow', () => {
  it('retries pgferry.Unreachable in every Lambda step, long enough for the largest window, with the time the state was entered', () => {
    expect(lambdaStates().length).toBeGreaterThanOrEqual(10);
    for (const [name, state] of lambdaStates()) {
      const retry = (state.Retry as Record<string, unknown>[]).find((r) => (r.ErrorEquals as string[]).includes('pgferry.Unreachable'));
      expect(retry, name).toEqual(unreachableRetry);
      expect((state.Parameters as { Payload: Record<string, unknown> }).Payload[`${STATE_ENTERED_TIME_FIELD}.$`], name).toBe('$$.State.EnteredTime');
    }
    const { IntervalSeconds, BackoffRate, MaxDelaySeconds, MaxAttempts } = unreachableRetry;
    let spanned = 0;
    for (let attempt = 0; attempt < MaxAttempts; attempt++) spanned += Math.min(IntervalSeconds * BackoffRate ** attempt, MaxDelaySeconds);
    expect(spanned).toBeGreaterThan(1440 * 60);
    // Each retry adds 3 history events: the longest outage costs under a thousand of the 25,000.
    expect(MaxAttempts * 3).toBeLessThanOrEqual(1000);
  });

  describe('run locally', () => {
    let dir: string;
    beforeEach(() => {
      dir = mkdtempSync(join(tmpdir(), 'pgferry-outage-test-'));
    });
    afterEach(() => rmSync(dir, { recursive: true, force: true }));

    const options = (): LocalRunOptions => ({
      definitionFile: join(dir, 'workflow.asl.json'),
      lambdas: [{ name: 'Outage', entry: 'test/fixtures/runner/outage-lambda.ts', arnPlaceholder: 'OutageFunctionArn', timeoutSeconds: 10, memoryMb: 128, needsDatabase: false }],
      tasks: [],
      retryIntervalOverrides: { Outage: 10 },
    });

    it('retries a step that finds its side out of reach, with the same entered time, until it is back; a new entry has a time of its own', async () => {
      const step = {
        Type: 'Task',
        Resource: 'arn:aws:states:::lambda:invoke',
        Parameters: { FunctionName: '${OutageFunctionArn}', Payload: { 'dir.$': '$.dir', outageAttempts: 3, 'spec.$': '$.spec', [`${STATE_ENTERED_TIME_FIELD}.$`]: '$$.State.EnteredTime' } },
        ResultSelector: { 'attempts.$': '$.Payload.attempts' },
        ResultPath: '$.outage',
        Retry: [unreachableRetry],
        Next: 'Again',
      };
      writeFileSync(
        options().definitionFile!,
        JSON.stringify({
          StartAt: 'Outage',
          States: {
            Outage: step,
            Again: { Type: 'Choice', Choices: [{ Variable: '$.outage.attempts', NumericEquals: 4, Next: 'Later' }], Default: 'Done' },
            Later: { Type: 'Wait', Seconds: 1, Next: 'Outage' },
            Done: { Type: 'Succeed' },
          },
        }),
      );
      const result = await runLocalWorkflow({ dir, spec: { cdc: { retryWindowMinutes: 2 } } }, options());
      expect(result).toMatchObject({ status: 'SUCCEEDED', output: { outage: { attempts: 5 } } });
      const entered = readFileSync(join(dir, 'attempts.log'), 'utf8').trim().split('\n');
      // Three attempts in the outage and the one that got through share the state's entry; the second entry is later.
      expect(entered).toHaveLength(5);
      expect(new Set(entered.slice(0, 4)).size).toBe(1);
      expect(Date.parse(entered[4]!)).toBeGreaterThan(Date.parse(entered[0]!));
    });
  });
});

describe('TCP keepalives', () => {
  it('every client configuration sends them after at most 60 s idle: sessions, pools of sessions, replication connections', () => {
    expect(KEEPALIVE_IDLE_MS).toBeLessThanOrEqual(60_000);
    const session = clientConfig(endpoint(), false, { applicationName: 'pgferry' });
    const replication = clientConfig(endpoint(), false, { extra: { replication: 'database' } as never });
    for (const config of [session, replication]) expect(config).toMatchObject({ keepAlive: true, keepAliveInitialDelayMillis: KEEPALIVE_IDLE_MS });
    // The change stream opens its pg.Client with these settings.
    const stream = new ChangeStream(replication, { slotName: 's', publicationName: 'p', appliedLsn: () => '0/0' });
    expect((stream as unknown as { config: object }).config).toMatchObject({ keepAlive: true, keepAliveInitialDelayMillis: KEEPALIVE_IDLE_MS });
  });
});

describe('a task whose work is safe to redo (a copy worker)', () => {
  const logged: string[] = [];
  const context = { spec: { cdc: { retryWindowMinutes: 1 } } as MigrationSpec, log: (line: string) => void logged.push(line) } as unknown as TaskContext;
  afterEach(() => {
    vi.useRealTimers();
    logged.length = 0;
  });

  it('runs again while a side is out of reach, and ends normally once it is back', async () => {
    let runs = 0;
    await redoingOnOutage(context, async () => {
      if (++runs <= 2) throw new Error('Connection terminated unexpectedly');
    }, 1);
    expect(runs).toBe(3);
    expect(logged[0]).toMatch(/^a side is out of reach \(Connection terminated unexpectedly\); running again in 0 s, within cdc.retryWindowMinutes$/);
  });

  it('fails at once on any other error, and with the last error once the outage outlasts the window', async () => {
    let runs = 0;
    const other = await failureOf(redoingOnOutage(context, async () => {
      runs++;
      throw new Error('relation "shop.orders" does not exist');
    }));
    expect([runs, other.message]).toEqual([1, 'relation "shop.orders" does not exist']);

    vi.useFakeTimers();
    runs = 0;
    const outage = failureOf(redoingOnOutage(context, async () => {
      runs++;
      throw pgError('ECONNREFUSED', 'connect ECONNREFUSED 10.0.0.5:5432');
    }));
    await vi.advanceTimersByTimeAsync(10 * 60_000);
    expect((await outage).message).toBe('connect ECONNREFUSED 10.0.0.5:5432');
    // Runs at 0, 5, 15, 35 and 75 s: the fifth is past the 1-minute window.
    expect(runs).toBe(5);
  });
});

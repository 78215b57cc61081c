/**
 * The one way a Fargate task of pgferry starts: it reads its settings from the container
 * environment (the workflow's container overrides), loads the migration's spec from the
 * target's control schema, and exits non-zero with a readable line on stderr when it fails.
 */
import type pg from 'pg';
import { connectSide, isConnectionFailure, type EndpointSettings } from '../engine/connect/index.js';
import { loadSpec } from '../engine/control/index.js';
import { PgferryError } from '../engine/errors.js';
import { parseSpec, type MigrationSpec } from '../engine/spec/index.js';
import { messageOf, sleep } from '../engine/sql.js';
import type { CallbackStepContext, TaskStepContext } from '../engine/steps/task.js';
import { metricsSinkFromEnvironment, type MetricsSink } from '../platform/observability.js';
import { alertSinkFromEnvironment } from '../platform/alerts.js';
import { DefaultSecretsProvider } from '../platform/secrets/index.js';
import { HeartbeatingTaskCallback, LOCAL_CALLBACK_ENV, taskCallbackFromEnvironment, type TaskCallback } from '../platform/task-callback.js';

/** What a task's step gets (engine/steps/task.ts), and what only the adapter reads: the environment and the metrics sink. */
export interface TaskContext extends TaskStepContext {
  env: NodeJS.ProcessEnv;
  /** Where metrics go on AWS (PGFERRY_METRICS=emf); undefined locally. */
  metrics?: MetricsSink;
}

/**
 * The context of a task the workflow waits for (`.waitForTaskToken`): it reports through
 * `callback`; `gone` (the callback's own signal) is aborted once the workflow no longer waits
 * for it (a timeout): what the task creates after that, it must remove itself.
 */
export interface CallbackTaskContext extends TaskContext, CallbackStepContext {
  callback: TaskCallback & Pick<HeartbeatingTaskCallback, 'gone' | 'reportFailure'>;
}

export function requiredEnv(env: NodeJS.ProcessEnv, name: string): string {
  const value = env[name];
  if (!value) throw new Error(`${name} is not set: this task must be started by the pgferry workflow.`);
  return value;
}

/**
 * The spec the run registered, read from the target. A task may start while the target is
 * away (a restart, a failover): it keeps trying for `windowMs`, the spec's cdc.retryWindowMinutes,
 * which the workflow passes in the environment since the spec itself is on the target.
 */
async function specOnTarget(connectTarget: () => Promise<pg.Client>, migration: string, windowMs: number): Promise<MigrationSpec> {
  return untilOutageEnds(
    async () => {
      const control = await connectTarget();
      try {
        return parseSpec(await loadSpec(control, migration));
      } finally {
        await control.end().catch(() => undefined);
      }
    },
    { windowMs, log: (message) => console.error(message) },
  );
}

export async function taskContext(task: string, env: NodeJS.ProcessEnv = process.env): Promise<TaskContext> {
  const migration = requiredEnv(env, 'PGFERRY_MIGRATION');
  const targetSettings = JSON.parse(requiredEnv(env, 'PGFERRY_TARGET')) as EndpointSettings;
  const secrets = new DefaultSecretsProvider(env);
  const applicationName = `pgferry-${task}`;
  const connectTarget = () => connectSide('target', targetSettings, secrets, { applicationName });
  const spec = await specOnTarget(connectTarget, migration, Number(env.PGFERRY_RETRY_WINDOW_MINUTES ?? 0) * 60_000);
  return {
    migration,
    spec,
    env,
    connectSource: () => connectSide('source', spec.source, secrets, { applicationName }),
    connectTarget,
    log: taskLog(task),
    metrics: metricsSinkFromEnvironment(migration, env),
    alertSink: alertSinkFromEnvironment(env),
  };
}

function taskLog(task: string): (message: string) => void {
  return (message) => console.log(`${new Date().toISOString()} ${task} ${message}`);
}

/** What runTask needs from its surroundings; tests replace it. */
export interface TaskEnvironment {
  env: NodeJS.ProcessEnv;
  context: (task: string, env: NodeJS.ProcessEnv) => Promise<TaskContext>;
  callback: (env: NodeJS.ProcessEnv) => TaskCallback;
  heartbeatIntervalMs?: number;
  /** Called once the body has ended, however it ended (a task process: exitSoon). */
  ended?: () => void;
}

const defaultEnvironment = (): TaskEnvironment => ({ env: process.env, context: taskContext, callback: taskCallbackFromEnvironment, ended: exitSoon });

/** How long a task process may take to close what it has open once its work is done, stopped or abandoned. */
export const EXIT_GRACE_MS = 5_000;

/**
 * Ends the process `EXIT_GRACE_MS` from now if it has not ended by itself: a task's work is
 * done, stopped or abandoned, and a session it left open (a snapshot's transaction, a
 * walsender) must not keep the process, and with it the source's xmin and WAL, alive.
 */
export function exitSoon(): void {
  setTimeout(() => process.exit(), EXIT_GRACE_MS).unref();
}

/**
 * A task the local runner started stops as on SIGTERM once the runner is gone (killed: its IPC
 * channel closes), since an orphan would hold the slot's walsender or a snapshot for nobody
 * (issue 12, D5). Returns what ends the watch: a 'disconnect' listener keeps the channel, and
 * so the process, alive.
 */
export function stopWhenRunnerGone(env: NodeJS.ProcessEnv): () => void {
  if (env[LOCAL_CALLBACK_ENV] !== '1' || !process.connected) return () => undefined;
  const runnerGone = () => {
    console.error('the pgferry runner that started this task is gone: stopping');
    process.kill(process.pid, 'SIGTERM');
  };
  process.once('disconnect', runnerGone);
  return () => process.off('disconnect', runnerGone);
}

/** The longest wait between two runs of a body that found a side out of reach. */
const OUTAGE_MAX_DELAY_MS = 60_000;

/**
 * Runs `body`, and runs it again when it fails because a side is out of reach (a restart, a
 * failover), until the outage has lasted cdc.retryWindowMinutes. Only for work that is safe to
 * redo: the workflow sees a sync task only as failed or not, so the task waits out the outage
 * itself. A run that lasted longer than the wait before it counts as recovered.
 */
export async function redoingOnOutage(context: TaskContext, body: (context: TaskContext) => Promise<void>, delayMs = 5_000): Promise<void> {
  await untilOutageEnds(() => body(context), { windowMs: context.spec.cdc.retryWindowMinutes * 60_000, log: context.log, delayMs });
}

/** Runs `work` again while it fails because a side is out of reach, with backoff, until the outage has lasted `windowMs`. */
async function untilOutageEnds<T>(work: () => Promise<T>, { windowMs, log, delayMs = 5_000 }: { windowMs: number; log: (message: string) => void; delayMs?: number }): Promise<T> {
  let failingSince: number | undefined;
  let delay = delayMs;
  for (;;) {
    const started = Date.now();
    try {
      return await work();
    } catch (error) {
      if (!isConnectionFailure(error)) throw error;
      if (Date.now() - started > delay) [failingSince, delay] = [undefined, delayMs];
      failingSince ??= started;
      if (windowMs <= 0 || Date.now() - failingSince > windowMs) throw error;
      log(`a side is out of reach (${messageOf(error)}); running again in ${Math.round(delay / 1000)} s, within cdc.retryWindowMinutes`);
      await sleep(delay);
      delay = Math.min(delay * 2, OUTAGE_MAX_DELAY_MS);
    }
  }
}

/**
 * Runs a task body and sets the exit code; the last stderr line is the reason a person reads.
 * `redoOnOutage`: the body is safe to redo, and runs again while a side is out of reach.
 */
export async function runTask(
  task: string,
  body: (context: TaskContext) => Promise<void>,
  environment = defaultEnvironment(),
  { redoOnOutage = false } = {},
): Promise<void> {
  const unwatch = stopWhenRunnerGone(environment.env);
  try {
    const context = await environment.context(task, environment.env);
    await (redoOnOutage ? redoingOnOutage(context, body) : body(context));
    process.exitCode = 0;
  } catch (error) {
    console.error(`${task} failed: ${(error as Error)?.message ?? String(error)}`);
    process.exitCode = 1;
  } finally {
    unwatch();
    environment.ended?.();
  }
}

/**
 * Runs the body of a task started with `.waitForTaskToken`. Heartbeats go to the workflow
 * every minute from the start (before the spec is even loaded) until the body reports its
 * result; if the task fails before reporting, the failure is reported for it, so the workflow
 * never waits for a task that has ended (unless the workflow already gave up on it: then there
 * is nobody to tell).
 */
export async function runCallbackTask(
  task: string,
  body: (context: CallbackTaskContext) => Promise<void>,
  environment = defaultEnvironment(),
): Promise<void> {
  const log = taskLog(task);
  const unwatch = stopWhenRunnerGone(environment.env);
  let callback: HeartbeatingTaskCallback | undefined;
  try {
    callback = new HeartbeatingTaskCallback(environment.callback(environment.env), { intervalMs: environment.heartbeatIntervalMs, log });
    await body({ ...(await environment.context(task, environment.env)), callback, gone: callback.gone });
    process.exitCode = 0;
  } catch (error) {
    const message = (error as Error)?.message ?? String(error);
    if (callback && !callback.reported) await callback.reportFailure(error instanceof PgferryError ? error.name : 'pgferry.TaskFailed', `The ${task} task failed: ${message}`);
    console.error(`${task} failed: ${message}`);
    process.exitCode = 1;
  } finally {
    unwatch();
    callback?.stop();
    environment.ended?.();
  }
}

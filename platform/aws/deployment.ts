/**
 * The contract between the CDK construct (infra/) and what reaches a deployed pgferry from
 * outside: the CLI, EventBridge events and the tasks' metrics. Names only, no AWS SDK.
 */
import type { CleanupResult } from '../../engine/steps/cleanup.js';
import type { AfterCutoverRequest, CutoverRequest } from '../../engine/cutover/request.js';
import type { MigrationStatus } from '../../engine/status.js';
import type { ThrottleChange, ThrottleResult } from '../../engine/flow/throttle.js';

/**
 * Tags the construct puts on the state machine, so `--state-machine ARN` (or an execution ARN)
 * is all the CLI needs to find the rest of the deployment.
 */
export const stateMachineTags = {
  /** ARN of the Operator function (lambdas/operate.ts): status, cutover and cleanup of a run. */
  operatorFunction: 'pgferry:operator-function',
  /** ARN of the role EventBridge Scheduler assumes to start executions (`pgferry schedule`). */
  schedulerRole: 'pgferry:scheduler-role',
  /** Name of the EventBridge Scheduler schedule group of this deployment. */
  scheduleGroup: 'pgferry:schedule-group',
} as const;

/** An event with this source and detail-type starts a migration; its `detail` is the spec. */
export const startMigrationEvent = { source: 'pgferry', detailType: 'Start migration' } as const;

/** An event with this source and detail-type resumes the paused migration its `detail` (the spec) names, as pgferry resume does. */
export const resumeMigrationEvent = { source: 'pgferry', detailType: 'Resume migration' } as const;

/** CloudWatch metrics (embedded metric format) the tasks write; the dashboard and alarms read them. */
export const metrics = {
  namespace: 'pgferry',
  /** Dimension naming the deployment (the construct sets POWERTOOLS_SERVICE_NAME to it). */
  serviceDimension: 'service',
  /** The tasks' switch: they publish metrics (EMF on stdout) only when the construct sets `name` to `emf`. */
  environment: { name: 'PGFERRY_METRICS', emf: 'emf' },
  names: {
    lagSeconds: 'ReplicationLagSeconds',
    lagBytes: 'ReplicationLagBytes',
    /** 1 while lag is over the spec's alerts.lagThresholdSeconds, else 0: the lag alarm's metric. */
    lagOverThreshold: 'ReplicationLagOverThreshold',
    rowsApplied: 'RowsApplied',
    heartbeat: 'ReplicatorHeartbeat',
    rowsCopied: 'RowsCopied',
    bytesCopied: 'BytesCopied',
    /** WAL the migration's replication slot holds back on the source (engine/cdc/retained-wal.ts). */
    retainedWalBytes: 'RetainedWalBytes',
    /** 1 while that is over the spec's cdc.maxRetainedWal (or near max_slot_wal_keep_size), or the slot is lost; else 0. */
    retainedWalOverThreshold: 'RetainedWalOverThreshold',
    /** 1 while a migration is paused (its PausedStatus loop publishes it): someone must resume or abandon it. */
    migrationPaused: 'MigrationPaused',
    /** Seconds applications could not write at cutover: from the fence (or, without one, the drain point) until the target was ready. */
    writeUnavailableSeconds: 'CutoverWriteUnavailableSeconds',
    fallbackWriteUnavailableSeconds: 'FallbackWriteUnavailableSeconds',
  },
} as const;

/**
 * Issue 15, item 4, the per-migration alert topic: the environment the construct gives the
 * functions and tasks that publish a migration's alerts to its alerts.snsTopicArn
 * (`publish` = `sns`), and ValidateSpec the topics the deployment may publish to (a JSON list,
 * the stack's `alertTopicArns` context), so a spec naming another topic is refused at once.
 */
export const alertEnvironment = {
  publish: { name: 'PGFERRY_ALERTS', sns: 'sns' },
  allowedTopics: 'PGFERRY_ALERT_TOPIC_ARNS',
  /** The stack's context key (infra/pgferry-stack.ts) that lists them. */
  contextKey: 'alertTopicArns',
} as const;

/**
 * What the CLI asks of the Operator function. `spec` is the execution's input. `cleanup` ends the
 * run that `execution` registered (needed by it, and only that run is touched) as the stack's
 * cleanup rule would have: `pgferry stop` of an execution that ended while its run stayed
 * registered (the rule failed), which would refuse every later run of the migration.
 */
/** `abandon` (cleanup only): drop the slot even of a run that could pause (pgferry stop --drop). */
export type OperatorRequest = {
  action: 'status' | 'cutover' | 'cleanup' | 'fallback' | 'finish' | 'throttle';
  spec: unknown;
  execution?: string;
  abandon?: boolean;
  /** finish: also remove the control schema from both sides. */
  dropControl?: boolean;
  /** throttle: the flow control limits to change (pgferry throttle; none given: only read them). */
  throttle?: ThrottleChange;
};
/** finish: `done` when the Operator finished a run that had no workflow left (cut over without reverse, or fallen back). */
export type OperatorFinish = { requested: true; message: string; done: boolean } | { requested: false; reason: string };
export type OperatorResponse =
  | { action: 'status'; status: MigrationStatus | null }
  | { action: 'cutover'; result: CutoverRequest }
  | { action: 'fallback'; result: AfterCutoverRequest }
  | { action: 'finish'; result: OperatorFinish }
  | { action: 'cleanup'; result: CleanupResult }
  | { action: 'throttle'; result: ThrottleResult };

/** The failure `pgferry stop` records: StopExecution's error and cause, the Operator's cleanup, and a local run's. */
export const stopFailure = { Error: 'pgferry.Stopped', Cause: 'Stopped with pgferry stop' } as const;

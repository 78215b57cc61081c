/**
 * Metrics of the Fargate tasks. The engine reports through optional observers (the replicator's
 * `onHeartbeat`, the copy worker's `onUnit`); here they become CloudWatch metrics in the
 * embedded metric format (EMF: one JSON line on stdout, which CloudWatch Logs turns into
 * metrics), with the names of platform/aws/deployment.ts. Only when the deployment asks for it
 * (`PGFERRY_METRICS=emf`, set by the CDK construct): local runs emit nothing.
 */
import { Metrics, MetricUnit } from '@aws-lambda-powertools/metrics';
import type { ReplicatorHeartbeat } from '../engine/cdc/replicator.js';
import type { RetainedWalReading } from '../engine/cdc/retained-wal.js';
import type { CopiedUnit } from '../engine/load/worker.js';
import { metrics as metricNames } from './aws/deployment.js';

/** Dimension naming the migration, beside the deployment's `service` dimension. */
export const MIGRATION_DIMENSION = 'Migration';

export type MetricUnitName = 'Count' | 'Seconds' | 'Bytes';

export interface MetricValue {
  name: string;
  unit: MetricUnitName;
  value: number;
}

/** Where a task's metrics go: publishes a set of values of one migration at once. */
export interface MetricsSink {
  publish(values: readonly MetricValue[]): void;
}

/** Where a Metrics instance sends the messages of Powertools itself (not the metrics). */
export interface MetricsLogger {
  debug(...args: unknown[]): void;
  info(...args: unknown[]): void;
  warn(...args: unknown[]): void;
  error(...args: unknown[]): void;
}

/**
 * A Powertools Metrics instance in the deployment's namespace (POWERTOOLS_METRICS_NAMESPACE, set
 * by the construct, else the one of platform/aws/deployment.ts), for the Lambdas and the tasks
 * alike. Powertools warns on every flush without application metrics (a Lambda invocation that
 * published only the cold-start metric): that warning is noise and is dropped; every other
 * message goes to `logger`.
 */
export function createMetrics(options: { logger: MetricsLogger; namespace?: string; serviceName?: string; env?: NodeJS.ProcessEnv }): Metrics {
  const env = options.env ?? process.env;
  const { logger } = options;
  return new Metrics({
    namespace: options.namespace ?? (env.POWERTOOLS_METRICS_NAMESPACE || metricNames.namespace),
    serviceName: options.serviceName,
    logger: {
      debug: (...args: unknown[]) => logger.debug(...args),
      info: (...args: unknown[]) => logger.info(...args),
      warn: (...args: unknown[]) => void (String(args[0]).startsWith('No application metrics to publish') || logger.warn(...args)),
      error: (...args: unknown[]) => logger.error(...args),
    },
  });
}

/** A task's Powertools messages: warnings and errors on stderr, nothing else. */
const consoleLogger: MetricsLogger = {
  debug: () => undefined,
  info: () => undefined,
  warn: (...args: unknown[]) => console.warn(...args),
  error: (...args: unknown[]) => console.error(...args),
};

/**
 * EMF through Powertools Metrics. Every line carries two dimension sets: {service, Migration}
 * for per-migration graphs, and {service} alone, so one alarm per deployment covers every
 * migration (CloudWatch aggregates only over identical dimension sets).
 */
export class EmfMetricsSink implements MetricsSink {
  readonly #metrics: Metrics;

  constructor(
    private readonly migration: string,
    options: { namespace?: string; serviceName?: string; env?: NodeJS.ProcessEnv } = {},
  ) {
    const env = options.env ?? process.env;
    this.#metrics = createMetrics({
      namespace: options.namespace,
      // Powertools names the default dimension `service` (metrics.serviceDimension).
      serviceName: options.serviceName ?? (env.POWERTOOLS_SERVICE_NAME || undefined),
      env,
      logger: consoleLogger,
    });
  }

  publish(values: readonly MetricValue[]): void {
    if (values.length === 0) return;
    const metrics = this.#metrics;
    metrics.addDimension(MIGRATION_DIMENSION, this.migration);
    metrics.addDimensions({}); // a second set with the default dimension (service) alone
    for (const { name, unit, value } of values) metrics.addMetric(name, MetricUnit[unit], value);
    metrics.publishStoredMetrics();
  }
}

/** The sink the environment asks for, or undefined (local runs, tests): nothing is emitted then. */
export function metricsSinkFromEnvironment(migration: string, env: NodeJS.ProcessEnv = process.env): MetricsSink | undefined {
  return env[metricNames.environment.name] === metricNames.environment.emf ? new EmfMetricsSink(migration, { env }) : undefined;
}

/**
 * The replicator's heartbeats (every second or so) as metrics every `intervalMs`: the largest
 * lag seen in the interval, the rows applied in it, a heartbeat (its absence means the streamer
 * is not running), and whether the lag was over the spec's alerts.lagThresholdSeconds.
 */
export function replicationMetrics(
  sink: MetricsSink,
  options: { lagThresholdSeconds: number; intervalMs?: number; now?: () => number },
): (beat: ReplicatorHeartbeat) => void {
  const intervalMs = options.intervalMs ?? 10_000;
  const now = options.now ?? Date.now;
  let lastPublished: number | undefined;
  let rows = 0;
  let lagSeconds = 0;
  let lagBytes = 0;
  return (beat) => {
    rows += beat.rowsApplied;
    lagSeconds = Math.max(lagSeconds, beat.lagSeconds);
    lagBytes = Math.max(lagBytes, beat.lagBytes);
    const time = now();
    if (lastPublished !== undefined && time - lastPublished < intervalMs) return;
    lastPublished = time;
    const { names } = metricNames;
    sink.publish([
      { name: names.lagSeconds, unit: 'Seconds', value: lagSeconds },
      { name: names.lagBytes, unit: 'Bytes', value: lagBytes },
      { name: names.rowsApplied, unit: 'Count', value: rows },
      { name: names.heartbeat, unit: 'Count', value: 1 },
      { name: names.lagOverThreshold, unit: 'Count', value: lagSeconds > options.lagThresholdSeconds ? 1 : 0 },
    ]);
    rows = 0;
    lagSeconds = 0;
    lagBytes = 0;
  };
}

/** Rows and bytes of every unit a copy worker finishes. */
export function copyMetrics(sink: MetricsSink): (unit: CopiedUnit) => void {
  return (unit) =>
    sink.publish([
      { name: metricNames.names.rowsCopied, unit: 'Count', value: unit.rows },
      { name: metricNames.names.bytesCopied, unit: 'Bytes', value: unit.bytes },
    ]);
}

/**
 * Every measurement of the WAL the slot holds back (about every 30 s, during the load and CDC):
 * the bytes, and 1 while over the spec's threshold or lost (the retained-WAL alarm's metric).
 */
export function retainedWalMetrics(sink: MetricsSink): (reading: RetainedWalReading) => void {
  const { names } = metricNames;
  return (reading) =>
    sink.publish([
      ...(reading.bytes !== null ? [{ name: names.retainedWalBytes, unit: 'Bytes' as const, value: reading.bytes }] : []),
      { name: names.retainedWalOverThreshold, unit: 'Count', value: reading.state === 'ok' ? 0 : 1 },
    ]);
}

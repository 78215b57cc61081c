/**
 * What StartReplication and ResumeReplication share: the streamer's replication connection,
 * the control session whose failure is recorded as the streamer's error, and the streaming
 * itself until cutover has drained.
 */
import pg from 'pg';
import { replicationNames } from '../cdc/slot.js';
import { runReplicator, StreamerFencedError, type ReplicatorHeartbeat } from '../cdc/replicator.js';
import { namesMapped, recordReplicationError } from '../control/index.js';
import { NameMap, namesNow, type Names } from '../schema/mapping.js';
import { CANONICAL_STARTUP_OPTIONS, withEndpoint, workingClientConfig, type SecretsProvider, type Side } from '../connect/index.js';
import { STREAMER_APPLICATION_NAME } from '../cutover/index.js';
import type { MigrationSpec } from '../spec/index.js';
import { parseTableKey, tableKey } from '../catalog/tables.js';
import type { RetainedWalReading } from '../cdc/retained-wal.js';
import { forwardOrigin } from '../cutover/reverse.js';
import { abandonSlotOverRetainedWal, retainedWalOptions } from './retained-wal.js';
import { goneError, type CallbackStepContext } from './task.js';

export interface ReplicationStepOptions {
  /** Stops streaming (the task was told to end: SIGTERM); the step then ends without error. */
  signal: AbortSignal;
  /** Reads the source's secret for the replication connection. */
  secrets: SecretsProvider;
  /** Told after every heartbeat of the streamer (metrics). */
  onHeartbeat?: (beat: ReplicatorHeartbeat) => void;
  /** Told every measurement of the WAL the slot holds back (metrics), during the load and CDC. */
  onRetainedWal?: (reading: RetainedWalReading) => void;
  /** How often that is measured; default 30 s (tests measure more often). */
  retainedWalIntervalMs?: number;
}

/** Settings of a replication connection (`replication: 'database'`) to the source. */
export type StreamConfig = () => Promise<pg.ClientConfig>;

/**
 * The secret is read at every (re)connect, and read again past any cache when the login is refused: a rotated password is picked up.
 * `side`: the side the slot is on (the target for reverse replication).
 */
export async function streamConfigOf(spec: MigrationSpec, secrets: SecretsProvider, side: Side = 'source'): Promise<StreamConfig> {
  return () =>
    withEndpoint(side, spec[side], secrets, (endpoint) =>
      workingClientConfig(endpoint, {
        applicationName: STREAMER_APPLICATION_NAME,
        extra: { replication: 'database', options: CANONICAL_STARTUP_OPTIONS } as Partial<pg.ClientConfig>,
      }),
    );
}

/** A replication connection from `streamConfig`, connected. */
export async function connectReplication(streamConfig: StreamConfig): Promise<pg.Client> {
  const client = new pg.Client(await streamConfig());
  await client.connect();
  return client;
}

/**
 * Runs `body` with a session on the target's control schema. What `body` throws is recorded
 * as the streamer's error, unless the workflow no longer waits for the task: then it is no error
 * of the migration (another attempt may be running), and the step ends with a TaskGoneError
 * saying `whenGone`.
 */
export async function withReplicationControl(
  context: CallbackStepContext,
  whenGone: string,
  body: (control: pg.Client) => Promise<void>,
): Promise<void> {
  const control = await context.connectTarget();
  control.on('error', () => undefined);
  try {
    await body(control);
  } catch (error) {
    if (context.gone.aborted) throw goneError(error, context.gone, whenGone);
    // A replaced streamer's end is no error of the migration: its successor is streaming.
    if (!(error instanceof StreamerFencedError)) await recordReplicationError(control, context.migration, (error as Error).message).catch(() => undefined);
    throw error;
  } finally {
    await control.end().catch(() => undefined);
  }
}

/** The target's names of the source's tables and columns: mapped once BeginApply has renamed them (schema/apply-mapping.ts). */
async function namesOnTarget({ migration, connectTarget }: { migration: string; connectTarget: () => Promise<pg.Client> }, spec: MigrationSpec): Promise<Names> {
  if (NameMap.of(spec).identity) return NameMap.IDENTITY;
  const target = await connectTarget();
  try {
    return namesNow(spec, await namesMapped(target, migration));
  } finally {
    await target.end().catch(() => undefined);
  }
}

/** Streams and applies from the slot until cutover has drained, or `signal` stops it. */
export async function streamChanges(
  { migration, spec, connectSource, connectTarget, log, alertSink }: CallbackStepContext,
  streamConfig: StreamConfig,
  { signal, onHeartbeat, onRetainedWal, retainedWalIntervalMs }: Pick<ReplicationStepOptions, 'signal' | 'onHeartbeat' | 'onRetainedWal' | 'retainedWalIntervalMs'>,
): Promise<void> {
  const context = { migration, spec, connectSource, connectTarget, log, alertSink };
  const { slotName, publicationName } = replicationNames(spec);
  const end = await runReplicator({
    migration,
    slotName,
    publicationName,
    conflictPolicy: spec.cdc.conflictPolicy,
    batch: spec.cdc.batch,
    retryWindowMs: spec.cdc.retryWindowMinutes * 60_000,
    heartbeatMs: 1000,
    connectSource,
    connectTarget,
    streamConfig,
    operations: Object.fromEntries(
      Object.entries(spec.objects.tables).flatMap(([table, options]) => (options.operations ? [[tableKey(parseTableKey(table)), options.operations]] : [])),
    ),
    ddl: { mode: spec.cdc.ddl, selection: spec.objects },
    filters: spec.objects,
    names: await namesOnTarget(context, spec),
    recordChangedKeys: spec.compare.enabled && spec.cutover.finalCompare,
    log,
    signal,
    onHeartbeat,
    retainedWal: { ...retainedWalOptions(spec, onRetainedWal, alertSink, log), intervalMs: retainedWalIntervalMs },
    ...(spec.cutover.reverse ? { origin: forwardOrigin(spec) } : {}),
    // Always on, with or without limits in the spec: pgferry throttle may set one while it streams.
    flow: { rowsPerSecond: spec.cdc.maxRowsPerSecond, bytesPerSecond: spec.cdc.maxBytesPerSecond },
  }).catch((error: unknown) => abandonSlotOverRetainedWal(context, error));
  log(end === 'drained' ? 'drained for cutover; streaming ended' : 'stopped');
}


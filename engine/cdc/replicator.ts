/**
 * The streamer + applier loop of CDC: streams the slot from the target's checkpoint, hands every
 * message to the Applier, commits batches of whole source transactions, acknowledges the slot
 * only up to what the target committed, writes a heartbeat with lag, drains to the cutover LSN,
 * and survives lost connections by resuming from the checkpoint within the retry window.
 *
 * This file coordinates; each step has a module of its own, the way pgcopydb's follow.c
 * coordinates stream → transform → apply:
 * - stream.ts receives (and acknowledges only what position.ts says is processed);
 * - stream-filter.ts drops the operations a table is not configured for, and table-sync.ts the
 *   changes a table copied at its own snapshot already holds; origin.ts marks the applier's
 *   transactions with a replication origin and drops those of the other direction (no loops);
 * - ddl/ applies the schema changes captured on the source, in stream order;
 * - early-apply.ts applies large transactions streamed while in progress;
 * - batching.ts commits the main session's batches (apply/ applies them);
 * - heartbeat.ts reports lag and metrics and detects the end (stop, drained);
 * - streamer-lock.ts keeps one streamer per migration.
 */
import type pg from 'pg';
import { CANONICAL_SESSION_SQL, isTransient, serverVersion } from '../connect/index.js';
import { claimStreamerGeneration, currentStreamerGeneration, markStreaming } from '../control/checkpoint.js';
import { PgferryError } from '../errors.js';
import { messageOf, sleep } from '../sql.js';
import { Applier, StreamerFencedError, type ConflictPolicy } from './apply/index.js';
import { Batcher } from './batching.js';
import { EarlyApply, StreamingFallback } from './early-apply.js';
import { CUTOVER_HEARTBEAT_MS, Heartbeat, heartbeatLoop } from './heartbeat.js';
import { FenceCheck, LateChangeWatch } from './fence-check.js';
import { formatLsn, parseLsn } from './pgoutput.js';
import { StreamPosition } from './position.js';
import { readPostDataLsn, readReplicationStatus, readTableSyncs } from '../control/index.js';
import { NameMap, type Names } from '../schema/mapping.js';
import { assertSlotUsable, checkRetainedWal, type RetainedWalCheck } from './retained-wal.js';
import { SyncedTableFilter } from './table-sync.js';
import { hasFilters, SourceStreamFilters } from './row-filter.js';
import type { StreamFilters } from './apply/filter.js';
import { ChangeStream, type StreamedMessage } from './stream.js';
import { operationFilter, StreamTransaction, type Operation } from './stream-filter.js';
import { earlyOriginNames, originFilter, setUpSessionOrigin, type OriginOptions } from './origin.js';
import { writeThroughFence } from '../cutover/fence.js';
import { endStaleWalsender, takeApplyLock } from './streamer-lock.js';
import { DdlStage, type DdlMode } from './ddl/apply.js';
import { DdlNotAppliedError, FlushBeforeDdl } from './ddl/errors.js';
import type { PgoutputMessage } from './pgoutput.js';
import type { MigrationSpec } from '../spec/index.js';
import { FlowControl, type FlowLimits } from '../flow/flow-control.js';

export type { Operation } from './stream-filter.js';

export interface ReplicatorOptions {
  migration: string;
  slotName: string;
  publicationName: string;
  conflictPolicy: ConflictPolicy;
  batch: { maxRows: number; maxBytes: number; maxDelayMs: number };
  /** How long lost connections are retried (from the first failure of a streak) before giving up. */
  retryWindowMs: number;
  /** Interval of heartbeat rows in the control schema. Default 1000 ms. */
  heartbeatMs?: number;
  connectSource: () => Promise<pg.Client>;
  connectTarget: () => Promise<pg.Client>;
  /** Settings of the replication connection (`replication: 'database'`, canonical startup options). */
  streamConfig: () => Promise<pg.ClientConfig>;
  log: (message: string) => void;
  /**
   * Tables (`schema.table`) whose changes are applied only for the listed operations
   * (objects.tables[…].operations); every other table gets all of them.
   */
  operations?: Record<string, Operation[]>;
  /**
   * Schema changes captured on the source (ddl/capture.ts): cdc.ddl, and the selection that
   * says which concern the migration. Default: replicate, every non-system schema.
   */
  ddl?: { mode: DdlMode; selection: MigrationSpec['objects'] };
  /** Record the keys each transaction changed, for the incremental comparison at cutover (compare and cutover.finalCompare on). */
  recordChangedKeys?: boolean;
  /**
   * The selection whose per-table `where`, `columns` and `excludeColumns` the stream follows
   * (row-filter.ts): what the publication does not filter, the applier does. Default: none.
   */
  filters?: MigrationSpec['objects'];
  /** Where the stream's tables and columns are on the side it applies to (schema/mapping.ts); the same names by default. */
  names?: Names;
  /** logical_decoding_work_mem of the walsender: the size of the blocks a large transaction is streamed in. Default 8MB. */
  streamBlock?: string;
  /** Stops streaming; the run ends with 'stopped'. */
  signal?: AbortSignal;
  /**
   * Told after every heartbeat written to the control schema (metrics, for instance). Called
   * synchronously; what it throws is ignored, so an observer cannot stop replication.
   */
  onHeartbeat?: (beat: ReplicatorHeartbeat) => void;
  /**
   * Measure the WAL the slot holds back every `intervalMs` (default 30 s), record it, and tell
   * `onReading` (retained-wal.ts). Above cdc.maxRetainedWal with dropSlotAboveMaxRetainedWal,
   * the run ends with a RetainedWalExceededError (not retried).
   */
  retainedWal?: Omit<RetainedWalCheck, 'migration' | 'slotName'> & { intervalMs?: number };
  /**
   * Replication origins (origin.ts), for two sides that replicate to each other (cutover.reverse):
   * the applier sessions mark their transactions with `name`, and transactions whose origin is
   * one of `skipOrigins` are not applied. Skipping turns off streaming of in-progress transactions:
   * pgoutput knows a transaction's origin only at its commit.
   */
  origin?: OriginOptions;
  /**
   * cdc.maxRowsPerSecond and cdc.maxBytesPerSecond (none given: no limit until pgferry throttle
   * sets one): the applier registers in the control schema (engine/flow/) and, when over, waits
   * before it takes the next message, which holds the stream back (status updates still go out).
   * Without it, no flow control at all.
   */
  flow?: FlowLimits;
}

/** What a heartbeat measured, for observers of the replicator. */
export interface ReplicatorHeartbeat {
  /** Seconds since the oldest source commit received but not yet on the target (0 when nothing waits). */
  lagSeconds: number;
  /** Bytes of source WAL not yet processed. */
  lagBytes: number;
  /** Rows applied to the target since the previous heartbeat. */
  rowsApplied: number;
  /** The source's current WAL position and how far the target has processed it. */
  sourceLsn: string;
  processedLsn: string;
}

export type ReplicatorEnd = 'drained' | 'stopped';

export { StreamerFencedError };

export class ReplicationFailedError extends PgferryError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('pgferry.ReplicationFailed', message, options);
  }
}

/** Stream failures a fresh connection may cure; StreamFailed covers a slot still held by a dying walsender. */
const RETRYABLE_NAMES = new Set(['pgferry.StreamLost', 'pgferry.StreamEnded', 'pgferry.StreamFailed', 'pgferry.Transient']);

function retryable(error: unknown): boolean {
  if (error instanceof DdlNotAppliedError) return false;
  if (RETRYABLE_NAMES.has((error as Error)?.name)) return true;
  const code = (error as { code?: string })?.code;
  if (typeof code === 'string' && /^(08|57P0|40001|40P01|53300)/.test(code)) return true;
  return isTransient(error) || /Connection terminated|not queryable|ECONNRESET|EPIPE|ECONNREFUSED/i.test(String((error as Error)?.message));
}

/** Runs until drained (cutover) or stopped; throws ReplicationFailedError when it cannot go on. */
export async function runReplicator(options: ReplicatorOptions): Promise<ReplicatorEnd> {
  const claim: GenerationClaim = {};
  const run: RunState = {};
  let failingSince: number | undefined;
  let delay = 500;
  let streamingAfter = 0;
  for (;;) {
    try {
      return await streamOnce(options, claim, run, Date.now() >= streamingAfter, () => {
        failingSince = undefined;
        delay = 500;
      });
    } catch (error) {
      if (options.signal?.aborted) return 'stopped';
      // lock_timeout is set only on the main session, and only while streaming: it waited for a streamed transaction.
      if (error instanceof StreamingFallback || (error as { code?: string })?.code === '55P03') {
        // Resume from the checkpoint without early apply for a while: the transaction comes again, whole.
        options.log(`${messageOf(error)}; resuming from the target's checkpoint without streaming in-progress transactions for ${STREAMING_PAUSE_MS / 60_000} minutes`);
        streamingAfter = Date.now() + STREAMING_PAUSE_MS;
        continue;
      }
      if (error instanceof FlushBeforeDdl) {
        options.log(`${error.message}; resuming from the target's checkpoint`);
        run.flushBefore = parseLsn(error.commitLsn);
        continue;
      }
      if (!retryable(error)) throw error;
      failingSince ??= Date.now();
      const failingFor = Date.now() - failingSince;
      if (failingFor > options.retryWindowMs) {
        throw new ReplicationFailedError(
          `Replication kept failing for ${Math.round(failingFor / 60_000)} minute(s), longer than cdc.retryWindowMinutes: ${messageOf(error)}`,
          { cause: error },
        );
      }
      options.log(`replication interrupted (${messageOf(error)}); resuming from the target's checkpoint in ${delay} ms`);
      await sleep(delay, options.signal);
      delay = Math.min(delay * 2, 30_000);
    }
  }
}


/** The messages flow control counts as rows applied. */
const ROW_CHANGES = new Set<string>(['insert', 'update', 'delete']);

/** Resuming without streaming in-progress transactions lasts this long after a StreamingFallback. */
const STREAMING_PAUSE_MS = 10 * 60_000;
const STREAM_BLOCK = '8MB';
/** The main session gives up waiting for a lock after this (only while streamed transactions are open). */
const MAIN_LOCK_TIMEOUT = '10s';

/** This process's streamer generation, claimed once it first holds the apply lock. */
interface GenerationClaim {
  generation?: number;
}

/** What a streaming run leaves to the next one of the same replicator. */
interface RunState {
  /** Replication stops at a schema change committed here: every transaction before it is committed on its own (FlushBeforeDdl). */
  flushBefore?: bigint;
}

/** The stages between stream and applier: operations per table, synced tables, schema changes (undefined: nothing to apply). */
async function changeStages(options: ReplicatorOptions, control: pg.Client, startLsn: string, applier: Applier) {
  const keep = operationFilter(options.operations);
  const notLooped = originFilter(options.origin?.skipOrigins);
  const transaction = new StreamTransaction();
  // Tables copied at a snapshot of their own (table-sync.ts) after where this stream starts.
  const synced = new SyncedTableFilter(transaction, await readTableSyncs(control, options.migration, startLsn));
  const ddl = new DdlStage({
    transaction,
    migration: options.migration,
    mode: options.ddl?.mode ?? 'replicate',
    selection: options.ddl?.selection ?? { include: [], exclude: [], tables: {} },
    publicationName: options.publicationName,
    control,
    postDataLsn: await readPostDataLsn(control, options.migration),
    renamed: !(options.names ?? NameMap.IDENTITY).identity,
    log: options.log,
  });
  // A promise only when the message needs one (a captured schema change): the stream's path stays synchronous.
  return (received: PgoutputMessage): PgoutputMessage | undefined | Promise<PgoutputMessage | undefined> => {
    transaction.note(received);
    const own = notLooped(received);
    const kept = own && keep(own);
    const unsynced = kept && synced.filter(kept);
    return unsynced && ddl.handle(unsynced, applier);
  };
}

/** Configures a target session for applying and puts an Applier on it. */
async function applierOn(client: pg.Client, options: ReplicatorOptions, claim: GenerationClaim, filters: StreamFilters | undefined, names: Names): Promise<Applier> {
  // Replica role: the fence's triggers (engine/cutover/fence.ts) let it write; a fenced database's read-only default must not stop it either.
  await client.query(`${CANONICAL_SESSION_SQL}; SET session_replication_role = replica; SET default_transaction_read_only = off`);
  return new Applier(client, {
    migration: options.migration,
    generation: () => claim.generation,
    conflictPolicy: options.conflictPolicy,
    maxChunkRows: options.batch.maxRows,
    maxChunkBytes: options.batch.maxBytes,
    recordChangedKeys: options.recordChangedKeys,
    filters,
    names,
  });
}

/** The replication connection's settings. */
async function streamConfig(options: ReplicatorOptions, streaming: boolean): Promise<pg.ClientConfig> {
  const config = await options.streamConfig();
  // The walsender streams an in-progress transaction once it holds this much of it: small
  // blocks keep what is left to apply after the commit small.
  if (streaming) config.options = [config.options, `-c logical_decoding_work_mem=${options.streamBlock ?? STREAM_BLOCK}`].filter(Boolean).join(' ');
  return config;
}

/** The sessions of one run, ended together when it ends. */
class Sessions {
  private readonly clients: pg.Client[] = [];

  async open(connect: () => Promise<pg.Client>): Promise<pg.Client> {
    const client = await connect();
    // A terminated idle session emits 'error'; the next query on it fails and says why.
    client.on('error', () => undefined);
    this.clients.push(client);
    return client;
  }

  async endAll(): Promise<void> {
    await Promise.all(this.clients.map((client) => client.end().catch(() => undefined)));
  }
}

/**
 * The run's target session with its Applier, holding the migration's apply lock (a stale
 * streamer's session and walsender are ended); a control session on the target; a source
 * session; and where to start: the target's checkpoint, or the slot's consistent point.
 */
async function openSessions(options: ReplicatorOptions, claim: GenerationClaim, sessions: Sessions) {
  const { migration } = options;
  // The filters' own source session evaluates the where filters the publication leaves to the applier.
  const filters = options.filters && hasFilters(options.filters) ? await SourceStreamFilters.open(await sessions.open(options.connectSource), options.filters, options.publicationName) : undefined;
  const target = await sessions.open(options.connectTarget);
  const names = options.names ?? NameMap.IDENTITY;
  const mainApplier = await applierOn(target, options, claim, filters, names);
  // A streamer that has been replaced never takes the lock back (it would end its successor's session).
  await assertCurrentGeneration(target, migration, claim);
  if (!(await takeApplyLock(target, migration, options.log))) {
    throw new ReplicationFailedError(`Another streamer still applies migration ${migration} to the target and could not be stopped.`);
  }
  // Claimed only now: the lock ended any older streamer's session, so nothing it held can block this.
  if (claim.generation === undefined) claim.generation = await claimStreamerGeneration(target, migration);
  else await assertCurrentGeneration(target, migration, claim);
  const control = await sessions.open(options.connectTarget);
  // The reverse stream keeps its control schema on the source, which the cutover fence made read-only for new sessions.
  await writeThroughFence(control);
  const source = await sessions.open(options.connectSource);
  await endStaleWalsender(source, options.slotName);
  await assertSlotUsable(source, options.slotName);
  const status = await readReplicationStatus(control, migration);
  if (!status) throw new ReplicationFailedError(`Migration ${migration} has no replication registered in the target's control schema.`);
  // Only now: a replaced streamer's session, which held the origin, has been ended, and a run
  // whose replication was removed (and its origins dropped) creates none again.
  if (options.origin) await setUpSessionOrigin(target, [options.origin.name]);
  return { target, mainApplier, control, source, filters, names, startLsn: status.appliedLsn ?? status.consistentLsn ?? '0/0' };
}

/** A replaced streamer (a newer generation took over) stops here. */
async function assertCurrentGeneration(target: pg.Client, migration: string, claim: GenerationClaim): Promise<void> {
  if (claim.generation === undefined) return;
  const current = await currentStreamerGeneration(target, migration);
  if (current !== claim.generation) throw new StreamerFencedError(migration, claim.generation, current);
}

/** One streaming run on fresh connections: until drained, stopped, or an error (which runReplicator may retry). */
async function streamOnce(options: ReplicatorOptions, claim: GenerationClaim, run: RunState, allowStreaming: boolean, healthy: () => void): Promise<ReplicatorEnd> {
  const { migration, log, signal } = options;
  const sessions = new Sessions();
  let stream: ChangeStream | undefined;
  let applier: Applier | undefined;
  let early: EarlyApply | undefined;
  let heartbeats: { stop: () => void } | undefined;
  let flow: FlowControl | undefined;
  try {
    const { target, mainApplier, control, source, filters, names, startLsn } = await openSessions(options, claim, sessions);
    applier = mainApplier;
    const position: StreamPosition = new StreamPosition(startLsn, (lsn): Promise<void> => thisStream.acknowledge(lsn));
    const skipsOrigins = (options.origin?.skipOrigins.length ?? 0) > 0;
    const streaming = allowStreaming && !skipsOrigins && (await serverVersion(source)) >= 140000;
    if (streaming) await target.query(`SET lock_timeout = '${MAIN_LOCK_TIMEOUT}'`);
    const thisStream: ChangeStream = (stream = new ChangeStream(await streamConfig(options, streaming), {
      slotName: options.slotName,
      publicationName: options.publicationName,
      streaming,
      startLsn,
      appliedLsn: () => formatLsn(position.processed),
      statusIntervalMs: 5_000,
    }));
    let fail!: (error: Error) => void;
    const failed = new Promise<never>((_, reject) => (fail = reject));
    failed.catch(() => undefined);
    thisStream.on('error', (error) => fail(error));

    const batcher = new Batcher(mainApplier, position, options.batch.maxDelayMs, fail);
    thisStream.on('keepalive', (event) => batcher.noteIdle(parseLsn(event.serverLsn), () => thisStream.hasQueuedMessages()));
    const earlyApply = (early = new EarlyApply({
      connectTarget: options.connectTarget,
      newApplier: async (client) => {
        const early = await applierOn(client, options, claim, filters, names);
        if (options.origin) await setUpSessionOrigin(client, earlyOriginNames(options.origin.name));
        return early;
      },
      flushMain: () => batcher.flush(),
      committed: async (endLsn, appliedLsn) => {
        position.received = parseLsn(endLsn);
        await position.markApplied(appliedLsn);
      },
    }));
    const stages = await changeStages(options, control, startLsn, mainApplier);
    const lateChanges = new LateChangeWatch();
    if (options.flow) flow = await FlowControl.start({ migration, kind: 'cdc', limits: options.flow, control, log });
    const paced = flow;
    /**
     * Hands the messages of a batch from `from` on to the applier, inside the batcher; returns
     * where it stopped: the end, or right after a message that put flow control over its limit.
     * Row changes (applied early or not) are what flow control counts as rows. Nothing here
     * awaits unless a message needs the target: buffering a change is synchronous.
     */
    const applyFrom = (batch: StreamedMessage[], from: number) =>
      batcher.exclusive(async () => {
        for (let i = from; i < batch.length; i++) {
          const streamed = batch[i]!;
          const staged = stages(streamed.message);
          const message = staged instanceof Promise ? await staged : staged;
          let row = false;
          if (message) {
            lateChanges.observe(message);
            row = ROW_CHANGES.has(message.tag);
            if (streaming && earlyApply.takes(message)) {
              await earlyApply.handle(message);
            } else {
              const applying = mainApplier.handle(message);
              if (applying) await applying;
              if (message.tag === 'commit') {
                const flushing = batcher.committed(message.endLsn, message.commitTime);
                if (flushing) await flushing;
                if (run.flushBefore !== undefined && parseLsn(message.commitLsn) < run.flushBefore) await batcher.flush();
              }
            }
          }
          if (paced?.account(row ? 1 : 0, streamed.bytes)) return i + 1;
        }
        return batch.length;
      });
    // Flow control waits outside the batcher (a batch due meanwhile is still committed): the
    // stream hands over the next messages only once this batch's handler returns.
    const onMessages = async (batch: StreamedMessage[]) => {
      for (let at = 0; at < batch.length; ) {
        at = await applyFrom(batch, at);
        if (paced) await paced.wait(signal);
      }
    };

    await thisStream.start(onMessages);
    await markStreaming(control, migration);
    log(`streaming from slot ${options.slotName} at ${startLsn}`);

    const heartbeat = new Heartbeat({
      migration,
      control,
      source,
      position,
      mainRows: () => mainApplier.stats.rows,
      allRows: () => mainApplier.stats.rows + earlyApply.rows,
      requestKeepalive: () => thisStream.requestKeepalive(),
      healthy,
      onHeartbeat: options.onHeartbeat,
      log,
      ...retainedWalDeps(options, source, control),
      fenceCheck: new FenceCheck({ migration, control, source, position, watch: lateChanges, requestKeepalive: () => thisStream.requestKeepalive(), log }),
    });
    const heartbeatMs = options.heartbeatMs ?? 1000;
    const loop = (heartbeats = heartbeatLoop(() => heartbeat.beat(), () => (heartbeat.cutoverRequested ? Math.min(heartbeatMs, CUTOVER_HEARTBEAT_MS) : heartbeatMs), signal));
    const end = await Promise.race([loop.ended, failed]);
    // Let a batch being applied finish; nothing pending is lost (the checkpoint says where to resume).
    await batcher.exclusive(async () => undefined);
    return end;
  } finally {
    heartbeats?.stop();
    await flow?.stop();
    await stream?.stop();
    await applier?.abort().catch(() => undefined);
    await early?.abortAll();
    await sessions.endAll();
  }
}

/** The heartbeat's measurement of the slot's retained WAL, when the options ask for it. */
function retainedWalDeps(options: ReplicatorOptions, source: pg.Client, control: pg.Client) {
  const { retainedWal } = options;
  if (!retainedWal) return {};
  const check = { ...retainedWal, migration: options.migration, slotName: options.slotName };
  return {
    checkRetainedWal: async () => void (await checkRetainedWal(source, control, check)),
    retainedWalIntervalMs: retainedWal.intervalMs,
  };
}

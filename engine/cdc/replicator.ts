/**
 * The streamer + applier loop of CDC: streams the slot from the target's checkpoint, hands every
 * message to the Applier, commits batches of whole source transactions, acknowledges the slot
 * only up to what the target committed, writes a heartbeat with lag, drains to the cutover LSN,
 * and survives lost connections by resuming from the checkpoint within the retry window.
 *
 * Batching adapts to the load: a batch is committed as soon as the stream goes idle (every
 * message already received has been handled), so light load sees one-transaction latency, and
 * while messages keep coming the batch grows up to `maxDelayMs`, so heavy load commits rarely
 * and applies set-wise. Very large transactions are applied in chunks inside the open target
 * transaction by the Applier itself.
 */
import type pg from 'pg';
import { CANONICAL_SESSION_SQL, isTransient, serverVersion } from '../connect/index.js';
import { PgferryError } from '../errors.js';
import { Applier, type ConflictPolicy } from './apply.js';
import { formatLsn, parseLsn, type PgoutputMessage } from './pgoutput.js';
import { currentWalLsn } from '../cutover/index.js';
import { readReplicationStatus } from '../control/index.js';
import { ChangeStream, PG_EPOCH_OFFSET_US, type StreamedMessage } from './stream.js';
import { messageOf, sleep } from '../sql.js';

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
  /** logical_decoding_work_mem of the walsender: the size of the blocks a large transaction is streamed in. Default 8MB. */
  streamBlock?: string;
  /** Stops streaming; the run ends with 'stopped'. */
  signal?: AbortSignal;
  /**
   * Told after every heartbeat written to the control schema (metrics, for instance). Called
   * synchronously; what it throws is ignored, so an observer cannot stop replication.
   */
  onHeartbeat?: (beat: ReplicatorHeartbeat) => void;
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
export type Operation = 'insert' | 'update' | 'delete' | 'truncate';

/**
 * Drops the changes a table's `operations` leave out. The publication carries every operation
 * (its `publish` list is for all its tables at once), so the choice per table is made here.
 */
function operationFilter(operations: Record<string, Operation[]> | undefined) {
  const restricted = new Map(Object.entries(operations ?? {}).map(([table, ops]) => [table, new Set(ops)]));
  const tables = new Map<number, string>();
  const allows = (relationId: number, op: Operation) => {
    const table = tables.get(relationId);
    const ops = table === undefined ? undefined : restricted.get(table);
    return !ops || ops.has(op);
  };
  return (message: PgoutputMessage): PgoutputMessage | undefined => {
    if (restricted.size === 0) return message;
    switch (message.tag) {
      case 'relation':
        tables.set(message.relationId, `${message.schema}.${message.name}`);
        return message;
      case 'insert':
      case 'update':
      case 'delete':
        return allows(message.relationId, message.tag) ? message : undefined;
      case 'truncate': {
        const relationIds = message.relationIds.filter((id) => allows(id, 'truncate'));
        return relationIds.length === 0 ? undefined : { ...message, relationIds };
      }
      default:
        return message;
    }
  };
}

export class ReplicationFailedError extends PgferryError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('pgferry.ReplicationFailed', message, options);
  }
}

/** Stream failures a fresh connection may cure; StreamFailed covers a slot still held by a dying walsender. */
const RETRYABLE_NAMES = new Set(['pgferry.StreamLost', 'pgferry.StreamEnded', 'pgferry.StreamFailed', 'pgferry.Transient']);

function retryable(error: unknown): boolean {
  if (RETRYABLE_NAMES.has((error as Error)?.name)) return true;
  const code = (error as { code?: string })?.code;
  if (typeof code === 'string' && /^(08|57P0|40001|40P01|53300)/.test(code)) return true;
  return isTransient(error) || /Connection terminated|not queryable|ECONNRESET|EPIPE|ECONNREFUSED/i.test(String((error as Error)?.message));
}


/** Runs until drained (cutover) or stopped; throws ReplicationFailedError when it cannot go on. */
export async function runReplicator(options: ReplicatorOptions): Promise<ReplicatorEnd> {
  let failingSince: number | undefined;
  let delay = 500;
  let streamingAfter = 0;
  for (;;) {
    try {
      return await streamOnce(options, Date.now() >= streamingAfter, () => {
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

/**
 * Early apply of a streamed transaction met something it does not handle (a subtransaction
 * abort, too many concurrent streamed transactions, a lock wait between its session and the
 * main one): the stream restarts from the checkpoint without streaming.
 */
class StreamingFallback extends Error {}
const STREAMING_PAUSE_MS = 10 * 60_000;
const STREAM_BLOCK = '8MB';
/** Streamed transactions applied early at once, each on a target session of its own. */
const MAX_EARLY_STREAMS = 4;
/** The main session gives up waiting for a lock after this (only while streamed transactions are open). */
const MAIN_LOCK_TIMEOUT = '10s';

/** Key of the session advisory lock that makes one streamer per migration apply at a time. */
const LOCK_CLASS = 0x70676672; // 'pgfr'

async function takeApplyLock(target: pg.Client, migration: string, log: (m: string) => void): Promise<void> {
  for (let attempt = 0; ; attempt++) {
    const { rows } = await target.query<{ ok: boolean }>('SELECT pg_try_advisory_lock($1, hashtext($2)) AS ok', [LOCK_CLASS, migration]);
    if (rows[0]!.ok) return;
    if (attempt >= 50) throw new ReplicationFailedError(`Another streamer still applies migration ${migration} to the target and could not be stopped.`);
    // A streamer the workflow gave up on (stale heartbeat) may still hold its session: end it.
    const ended = await target.query(
      `SELECT pg_terminate_backend(pid) FROM pg_locks
        WHERE locktype = 'advisory' AND granted AND classid = $1::int::oid AND objid = hashtext($2)::oid AND objsubid = 2
          AND pid <> pg_backend_pid()`,
      [LOCK_CLASS, migration],
    );
    if (attempt === 0 && ended.rowCount) log('ended the session of an earlier streamer of this migration');
    await sleep(200);
  }
}

async function streamOnce(options: ReplicatorOptions, allowStreaming: boolean, healthy: () => void): Promise<ReplicatorEnd> {
  const { migration, log, signal } = options;
  const clients: pg.Client[] = [];
  const open = async (connect: () => Promise<pg.Client>) => {
    const client = await connect();
    // A terminated idle session emits 'error'; the next query on it fails and says why.
    client.on('error', () => undefined);
    clients.push(client);
    return client;
  };
  let stream: ChangeStream | undefined;
  let heartbeat: NodeJS.Timeout | undefined;
  let applier: Applier | undefined;
  /** Streamed transactions being applied early, by top-level xid: each in its own open target transaction. */
  const early = new Map<number, { applier: Applier; client: pg.Client }>();
  /** Rows applied by early appliers of streamed transactions that committed (for onHeartbeat). */
  let streamedRows = 0;
  /** Configures a target session for applying and puts an Applier on it. */
  const newApplier = async (client: pg.Client) => {
    await client.query(`${CANONICAL_SESSION_SQL}; SET session_replication_role = replica`);
    return new Applier(client, { migration, conflictPolicy: options.conflictPolicy, maxChunkRows: options.batch.maxRows, maxChunkBytes: options.batch.maxBytes });
  };
  try {
    const target = await open(options.connectTarget);
    const thisApplier = await newApplier(target);
    await takeApplyLock(target, migration, log);
    const control = await open(options.connectTarget);
    const source = await open(options.connectSource);

    // Holding the apply lock makes this the migration's streamer: a walsender still on the slot is a stale one's.
    await source.query('SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots WHERE slot_name = $1 AND active_pid IS NOT NULL', [options.slotName]);
    const status = await readReplicationStatus(control, migration);
    if (!status) throw new ReplicationFailedError(`Migration ${migration} has no replication registered in the target's control schema.`);
    const startLsn = status.appliedLsn ?? status.consistentLsn ?? '0/0';
    let applied = parseLsn(startLsn);
    /** Everything received up to here is on the target: the applied LSN, or the server's position while we were idle. */
    let processed = applied;
    let received = applied;
    let oldestPendingCommit: number | undefined; // ms since the Unix epoch
    let lastFlushAt = Date.now();
    let flushScheduled = false;

    applier = thisApplier;
    const streaming = allowStreaming && (await serverVersion(source)) >= 140000;
    if (streaming) await target.query(`SET lock_timeout = '${MAIN_LOCK_TIMEOUT}'`);
    const config = await options.streamConfig();
    // The walsender streams an in-progress transaction once it holds this much of it: small
    // blocks keep what is left to apply after the commit small.
    if (streaming) config.options = [config.options, `-c logical_decoding_work_mem=${options.streamBlock ?? STREAM_BLOCK}`].filter(Boolean).join(' ');
    const thisStream = new ChangeStream(config, {
      slotName: options.slotName,
      publicationName: options.publicationName,
      streaming,
      startLsn,
      appliedLsn: () => formatLsn(processed),
      statusIntervalMs: 5_000,
    });
    stream = thisStream;

    let chain: Promise<unknown> = Promise.resolve();
    const exclusive = <T>(fn: () => Promise<T>): Promise<T> => {
      const run = chain.then(fn);
      chain = run.catch(() => undefined);
      return run;
    };

    let fail!: (error: Error) => void;
    const failed = new Promise<never>((_, reject) => (fail = reject));
    failed.catch(() => undefined);
    thisStream.on('error', (error) => fail(error));

    /** Everything the server sent up to `lsn` is on the target: the slot may forget it. */
    const markProcessed = async (lsn: bigint) => {
      if (lsn <= processed) return;
      processed = lsn;
      await thisStream.acknowledge(formatLsn(processed));
    };
    /** A target transaction committed, with the checkpoint `lsn` in it. */
    const markApplied = async (lsn: string | undefined) => {
      if (!lsn) return;
      applied = parseLsn(lsn);
      await markProcessed(applied);
    };
    const flush = async () => {
      if (!thisApplier.atBoundary || thisApplier.pendingTransactions === 0) return;
      const result = await thisApplier.flush();
      oldestPendingCommit = undefined;
      lastFlushAt = Date.now();
      await markApplied(result.appliedLsn);
    };
    const scheduleFlush = () => {
      if (flushScheduled) return;
      flushScheduled = true;
      setImmediate(() => {
        flushScheduled = false;
        exclusive(flush).catch((error) => fail(error as Error));
      });
    };
    /** After a keepalive: if nothing is waiting anywhere, the server's position is processed too. */
    const noteIdle = (serverLsn: bigint) =>
      setImmediate(() => {
        exclusive(async () => {
          if (thisStream.hasQueuedMessages() || !thisApplier.atBoundary || thisApplier.pendingTransactions > 0) return;
          if (serverLsn > received) received = serverLsn;
          await markProcessed(serverLsn);
        }).catch((error) => fail(error as Error));
      });
    thisStream.on('keepalive', (event) => noteIdle(parseLsn(event.serverLsn)));

    /**
     * A large transaction streamed while in progress is applied as it arrives, in a target
     * transaction of its own, and committed at its Stream Commit, after everything that
     * committed before it (the main session is flushed first). Rows cannot conflict with the
     * main session's: on the source, a transaction touching rows of an uncommitted one waits
     * for it, so it commits after it.
     */
    let streamXid: number | undefined;
    const openEarly = async (xid: number) => {
      if (early.size >= MAX_EARLY_STREAMS) throw new StreamingFallback(`more than ${MAX_EARLY_STREAMS} large transactions in progress at once`);
      const client = await options.connectTarget();
      client.on('error', () => undefined);
      const entry = { client, applier: await newApplier(client) };
      early.set(xid, entry);
      await entry.applier.handle({ tag: 'begin', finalLsn: '0/0', commitTime: 0n, xid });
      return entry;
    };
    const closeEarly = async (xid: number, abort: boolean) => {
      const entry = early.get(xid)!;
      early.delete(xid);
      if (abort) await entry.applier.abort().catch(() => undefined);
      await entry.client.end().catch(() => undefined);
    };
    const handleStreamed = async (message: PgoutputMessage): Promise<boolean> => {
      switch (message.tag) {
        case 'stream-start':
          streamXid = message.xid;
          if (!early.has(message.xid)) await openEarly(message.xid);
          return true;
        case 'stream-stop':
          streamXid = undefined;
          return true;
        case 'stream-abort': {
          if (message.subxid !== message.xid) throw new StreamingFallback(`a subtransaction of streamed transaction ${message.xid} was rolled back`);
          if (early.has(message.xid)) await closeEarly(message.xid, true);
          return true;
        }
        case 'stream-commit': {
          const entry = early.get(message.xid);
          if (!entry) throw new StreamingFallback(`streamed transaction ${message.xid} committed without its start`);
          await flush();
          await entry.applier.handle({ tag: 'commit', flags: message.flags, commitLsn: message.commitLsn, endLsn: message.endLsn, commitTime: message.commitTime });
          const result = await entry.applier.flush();
          streamedRows += entry.applier.stats.rows;
          await closeEarly(message.xid, false);
          received = parseLsn(message.endLsn);
          await markApplied(result.appliedLsn);
          return true;
        }
        default:
          if (streamXid === undefined) return false;
          await early.get(streamXid)!.applier.handle(message);
          return true;
      }
    };

    const keep = operationFilter(options.operations);
    const onMessage = (streamed: StreamedMessage) =>
      exclusive(async () => {
        const message = keep(streamed.message);
        if (!message) return;
        if (streaming && (await handleStreamed(message))) return;
        await thisApplier.handle(message);
        if (message.tag === 'commit') {
          received = parseLsn(message.endLsn);
          oldestPendingCommit ??= Number(message.commitTime / 1000n) + Number(PG_EPOCH_OFFSET_US / 1000n);
          if (Date.now() - lastFlushAt >= options.batch.maxDelayMs) {
            await flush();
          } else {
            scheduleFlush();
          }
        }
      });

    await thisStream.start(onMessage);
    await control.query('UPDATE pgferry.replication_status SET streaming_since = now(), last_error = NULL WHERE migration = $1', [migration]);
    log(`streaming from slot ${options.slotName} at ${startLsn}`);

    let lastRows = 0;
    let lastObservedRows = 0;
    let lastBeat = Date.now();
    let healthyReported = false;
    const beat = async (): Promise<ReplicatorEnd | undefined> => {
      const sourceLsn = parseLsn(await currentWalLsn(source));
      const now = Date.now();
      const lagBytes = sourceLsn > processed ? sourceLsn - processed : 0n;
      // Seconds since the oldest source commit received but not yet on the target.
      const lagSeconds = oldestPendingCommit !== undefined ? Math.max(0, now - oldestPendingCommit) / 1000 : 0;
      const rowsPerSecond = ((thisApplier.stats.rows - lastRows) * 1000) / Math.max(1, now - lastBeat);
      lastRows = thisApplier.stats.rows;
      lastBeat = now;
      const { rows: requests } = await control.query<{ drain_lsn: string | null; phase: string | null }>(
        `UPDATE pgferry.replication_status s
            SET received_lsn = $2::pg_lsn, processed_lsn = $3::pg_lsn, source_lsn = $4::pg_lsn, heartbeat_at = now(),
                lag_bytes = $5, lag_seconds = $6, rows_per_second = $7
          WHERE migration = $1
          RETURNING drain_lsn::text, (SELECT phase FROM pgferry.migrations WHERE name = $1) AS phase`,
        [migration, formatLsn(received), formatLsn(processed), formatLsn(sourceLsn), lagBytes.toString(), lagSeconds, rowsPerSecond],
      );
      if (!healthyReported) {
        healthyReported = true;
        healthy();
      }
      if (options.onHeartbeat) {
        const appliedRows = thisApplier.stats.rows + streamedRows;
        try {
          options.onHeartbeat({
            lagSeconds,
            lagBytes: Number(lagBytes),
            rowsApplied: appliedRows - lastObservedRows,
            sourceLsn: formatLsn(sourceLsn),
            processedLsn: formatLsn(processed),
          });
        } catch {
          // An observer never stops replication.
        }
        lastObservedRows = appliedRows;
      }
      const request = requests[0];
      if (!request || request.phase === 'failed' || request.phase === 'done') return 'stopped';
      if (request.drain_lsn && processed >= parseLsn(request.drain_lsn)) {
        await control.query('UPDATE pgferry.replication_status SET drained_at = now() WHERE migration = $1', [migration]);
        log(`drained to ${request.drain_lsn} (applied ${formatLsn(applied)})`);
        return 'drained';
      }
      // Draining and nothing left to apply: the server's answer says whether it has read up to the drain LSN.
      if (request.drain_lsn) thisStream.requestKeepalive();
      return undefined;
    };

    const ended = new Promise<ReplicatorEnd>((resolve, reject) => {
      const tick = () => {
        if (signal?.aborted) return resolve('stopped');
        beat().then(
          (end) => (end ? resolve(end) : (heartbeat = setTimeout(tick, options.heartbeatMs ?? 1000))),
          reject,
        );
      };
      signal?.addEventListener('abort', () => resolve('stopped'), { once: true });
      tick();
    });
    const end = await Promise.race([ended, failed]);
    // Let a batch being applied finish; nothing pending is lost (the checkpoint says where to resume).
    await exclusive(async () => undefined);
    return end;
  } finally {
    if (heartbeat) clearTimeout(heartbeat);
    await stream?.stop();
    await applier?.abort().catch(() => undefined);
    for (const entry of early.values()) {
      await entry.applier.abort().catch(() => undefined);
      await entry.client.end().catch(() => undefined);
    }
    await Promise.all(clients.map((client) => client.end().catch(() => undefined)));
  }
}

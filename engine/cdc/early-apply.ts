/**
 * Early apply of large transactions the server streams while still in progress (protocol 2,
 * PostgreSQL 14+). Each is applied as it arrives, in a target transaction of its own on a
 * target session of its own, and committed at its Stream Commit, after everything that
 * committed before it (the main session is flushed first). Rows cannot conflict with the main
 * session's: on the source, a transaction touching rows of an uncommitted one waits for it, so
 * it commits after it.
 */
import type pg from 'pg';
import type { Applier } from './apply/index.js';
import type { PgoutputMessage } from './pgoutput.js';

/**
 * Early apply met something it does not handle (a subtransaction abort, too many concurrent
 * streamed transactions, a lock wait between its session and the main one): the stream
 * restarts from the checkpoint without streaming.
 */
export class StreamingFallback extends Error {}

/** Streamed transactions applied early at once, each on a target session of its own. */
export const MAX_EARLY_STREAMS = 4;

export interface EarlyApplyDeps {
  connectTarget: () => Promise<pg.Client>;
  /** Configures a target session for applying and puts an Applier on it. */
  newApplier: (client: pg.Client) => Promise<Applier>;
  /** Commits what the main session holds (it committed on the source before the streamed transaction). */
  flushMain: () => Promise<void>;
  /** A streamed transaction ending at `endLsn` is committed on the target, with the checkpoint `appliedLsn`. */
  committed: (endLsn: string, appliedLsn: string | undefined) => Promise<void>;
}

const STREAM_TAGS = new Set<string>(['stream-start', 'stream-stop', 'stream-abort', 'stream-commit']);

export class EarlyApply {
  /** Streamed transactions being applied early, by top-level xid: each in its own open target transaction. */
  private readonly open = new Map<number, { applier: Applier; client: pg.Client }>();
  /** The transaction whose block is being streamed (between Stream Start and Stream Stop). */
  private streamXid: number | undefined;
  /** Rows applied by early appliers of streamed transactions that committed. */
  rows = 0;

  constructor(private readonly deps: EarlyApplyDeps) {}

  /** Whether the message belongs to a streamed transaction (handle takes it), not to the main session. */
  takes(message: PgoutputMessage): boolean {
    return this.streamXid !== undefined || STREAM_TAGS.has(message.tag);
  }

  /** Applies a message of a streamed transaction (one `takes`). */
  async handle(message: PgoutputMessage): Promise<void> {
    switch (message.tag) {
      case 'stream-start':
        this.streamXid = message.xid;
        if (!this.open.has(message.xid)) await this.start(message.xid);
        return;
      case 'stream-stop':
        this.streamXid = undefined;
        return;
      case 'stream-abort':
        if (message.subxid !== message.xid) throw new StreamingFallback(`a subtransaction of streamed transaction ${message.xid} was rolled back`);
        if (this.open.has(message.xid)) await this.close(message.xid, true);
        return;
      case 'stream-commit':
        await this.commit(message);
        return;
      default:
        await this.open.get(this.streamXid!)!.applier.handle(message);
    }
  }

  /** Rolls back and closes every streamed transaction still open (the run is ending). */
  async abortAll(): Promise<void> {
    for (const entry of this.open.values()) {
      await entry.applier.abort().catch(() => undefined);
      await entry.client.end().catch(() => undefined);
    }
  }

  private async start(xid: number): Promise<void> {
    if (this.open.size >= MAX_EARLY_STREAMS) throw new StreamingFallback(`more than ${MAX_EARLY_STREAMS} large transactions in progress at once`);
    const client = await this.deps.connectTarget();
    client.on('error', () => undefined);
    const entry = { client, applier: await this.deps.newApplier(client) };
    this.open.set(xid, entry);
    await entry.applier.handle({ tag: 'begin', finalLsn: '0/0', commitTime: 0n, xid });
  }

  private async commit(message: Extract<PgoutputMessage, { tag: 'stream-commit' }>): Promise<void> {
    const entry = this.open.get(message.xid);
    if (!entry) throw new StreamingFallback(`streamed transaction ${message.xid} committed without its start`);
    await this.deps.flushMain();
    await entry.applier.handle({ tag: 'commit', flags: message.flags, commitLsn: message.commitLsn, endLsn: message.endLsn, commitTime: message.commitTime });
    const result = await entry.applier.flush();
    this.rows += entry.applier.stats.rows;
    await this.close(message.xid, false);
    await this.deps.committed(message.endLsn, result.appliedLsn);
  }

  private async close(xid: number, abort: boolean): Promise<void> {
    const entry = this.open.get(xid)!;
    this.open.delete(xid);
    if (abort) await entry.applier.abort().catch(() => undefined);
    await entry.client.end().catch(() => undefined);
  }
}

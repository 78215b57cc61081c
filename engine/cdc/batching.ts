/**
 * Batches of the main apply session, adapted to the load: a batch is committed as soon as the
 * stream goes idle (every message already received has been handled), so light load sees
 * one-transaction latency, and while messages keep coming the batch grows up to `maxDelayMs`,
 * so heavy load commits rarely and applies set-wise. Catching up on a backlog (the source's WAL
 * is more than CATCH_UP_BYTES past what was received), a pause between two reads of the socket
 * is no idleness: the batch grows up to `maxDelayMs` (or the chunk limits) before it commits,
 * instead of committing (and acknowledging) every few dozen transactions. Everything that
 * touches the applier runs one at a time through `exclusive`.
 */
import type { Applier } from './apply/index.js';
import type { StreamPosition } from './position.js';
import { crashPointAfterCheckpoint } from './crash-point.js';

/** A backlog of source WAL beyond this (as of the last heartbeat) means catching up. */
export const CATCH_UP_BYTES = 8n * 1024n * 1024n;

export class Batcher {
  private chain: Promise<unknown> = Promise.resolve();
  private lastFlushAt = Date.now();
  private flushScheduled = false;

  constructor(
    private readonly applier: Applier,
    private readonly position: StreamPosition,
    private readonly maxDelayMs: number,
    /** Fails the run with an error met outside a caller's await. */
    private readonly fail: (error: Error) => void,
  ) {}

  /**
   * Runs `fn` after everything queued before it. A failure halts the position before anything
   * queued behind it runs: nothing is acknowledged after a failed apply (see StreamPosition.halt).
   */
  exclusive<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.chain.then(fn).catch((error: unknown) => {
      this.position.halt();
      throw error;
    });
    this.chain = run.catch(() => undefined);
    return run;
  }

  /** Commits the main session's whole transactions with their checkpoint (when it is between transactions and has any). */
  async flush(): Promise<void> {
    if (!this.applier.atBoundary || this.applier.pendingTransactions === 0) return;
    const result = await this.applier.flush();
    crashPointAfterCheckpoint();
    this.position.noteFlushed();
    this.lastFlushAt = Date.now();
    await this.position.markApplied(result.appliedLsn);
  }

  /** The main applier took a source commit: flush now if the batch is old enough (the promise), else once the stream is idle. */
  committed(endLsn: string, commitTime: bigint): Promise<void> | undefined {
    this.position.noteCommit(endLsn, commitTime);
    if (Date.now() - this.lastFlushAt >= this.maxDelayMs) return this.flush();
    this.scheduleFlush();
    return undefined;
  }

  /**
   * Flushes after the messages already received (queued behind this in `exclusive`) are handled;
   * catching up, once the batch is `maxDelayMs` old.
   */
  private scheduleFlush(): void {
    if (this.flushScheduled) return;
    this.flushScheduled = true;
    const flush = () => {
      this.flushScheduled = false;
      this.exclusive(() => this.flush()).catch((error) => this.fail(error as Error));
    };
    if (this.position.unreceived > CATCH_UP_BYTES) setTimeout(flush, Math.max(0, this.maxDelayMs - (Date.now() - this.lastFlushAt))).unref();
    else setImmediate(flush);
  }

  /** After a keepalive at `serverLsn`: if nothing is waiting anywhere, the server's position is processed too. */
  noteIdle(serverLsn: bigint, hasQueuedMessages: () => boolean): void {
    setImmediate(() => {
      this.exclusive(async () => {
        if (hasQueuedMessages() || !this.applier.atBoundary || this.applier.pendingTransactions > 0) return;
        if (serverLsn > this.position.received) this.position.received = serverLsn;
        await this.position.markProcessed(serverLsn);
      }).catch((error) => this.fail(error as Error));
    });
  }
}

/**
 * Where one streaming run stands: what the target has committed (applied), what the slot may
 * forget (processed: applied, or the server's position while nothing was waiting), what the
 * stream has delivered (received), and the oldest source commit not yet on the target.
 * The slot is acknowledged only through markProcessed, only forward, and never again once the
 * run has failed (halt): what it had received but not applied must come again from the slot.
 */
import { formatLsn, parseLsn } from './pgoutput.js';
import { PG_EPOCH_OFFSET_US } from './stream.js';

export class StreamPosition {
  applied: bigint;
  processed: bigint;
  received: bigint;
  /** The source's WAL position at the last heartbeat. */
  sourceLsn = 0n;
  /** Commit time of the oldest source transaction received but not yet committed on the target, ms since the Unix epoch. */
  oldestPendingCommit: number | undefined;
  private halted = false;

  constructor(
    startLsn: string,
    /** Tells the slot it may forget up to an LSN. */
    private readonly acknowledge: (lsn: string) => Promise<void>,
  ) {
    this.applied = parseLsn(startLsn);
    this.processed = this.applied;
    this.received = this.applied;
  }

  /** Everything the server sent up to `lsn` is on the target: the slot may forget it. */
  async markProcessed(lsn: bigint): Promise<void> {
    if (this.halted || lsn <= this.processed) return;
    this.processed = lsn;
    await this.acknowledge(formatLsn(this.processed));
  }

  /**
   * The run failed: nothing more is acknowledged. A keepalive handled after a failed apply would
   * otherwise find the applier empty (its batch rolled back) and let the slot forget the
   * transactions that were never committed on the target.
   */
  halt(): void {
    this.halted = true;
  }

  /** A target transaction committed, with the checkpoint `lsn` in it. */
  async markApplied(lsn: string | undefined): Promise<void> {
    if (!lsn) return;
    this.applied = parseLsn(lsn);
    await this.markProcessed(this.applied);
  }

  /** A source commit arrived (ending at `endLsn`, committed at `commitTime` µs since 2000-01-01). */
  noteCommit(endLsn: string, commitTime: bigint): void {
    this.received = parseLsn(endLsn);
    this.oldestPendingCommit ??= Number(commitTime / 1000n) + Number(PG_EPOCH_OFFSET_US / 1000n);
  }

  /** Bytes of source WAL, as of the last heartbeat, beyond what the stream has delivered: a backlog when large. */
  get unreceived(): bigint {
    return this.sourceLsn > this.received ? this.sourceLsn - this.received : 0n;
  }

  /** The main session committed everything it had received. */
  noteFlushed(): void {
    this.oldestPendingCommit = undefined;
  }
}

/**
 * Flow control's arithmetic, pure (a clock is passed in): how long a worker waits so that what
 * it moves stays at its share of a limit, and what each worker's share is (issue 15, item 3).
 * engine/flow/flow-control.ts runs it against the control schema; copy workers and the CDC
 * applier call that.
 */

/** A limit per second on rows and on bytes; undefined: none. */
export interface FlowLimits {
  rowsPerSecond?: number;
  bytesPerSecond?: number;
}

/**
 * Each worker's share of `limit` when `workers` run at once (at least this one). The limit is
 * shared by the workers actually running, not by `parallelism`: a load with fewer units than
 * that, or whose other workers have finished, would be held back harder than asked.
 */
export function workerShare(limit: number | undefined, workers: number): number | undefined {
  return limit ? limit / Math.max(1, workers) : undefined;
}

/** Both limits of `limits` shared by `workers`. */
export function sharedLimits(limits: FlowLimits, workers: number): FlowLimits {
  return { rowsPerSecond: workerShare(limits.rowsPerSecond, workers), bytesPerSecond: workerShare(limits.bytesPerSecond, workers) };
}

/**
 * A limit as `pgferry throttle` leaves it in the control schema: null keeps the spec's, 0 lifts
 * it, a positive number replaces it.
 */
export function limitInForce(specLimit: number | undefined, override: number | null | undefined): number | undefined {
  if (override === null || override === undefined) return specLimit || undefined;
  return override > 0 ? override : undefined;
}

/**
 * Idle time that may be made up for at once: after a pause (a unit's commit, an idle stream) a
 * worker may run ahead of its rate by this much before it waits. Small, so the rate over a few
 * seconds stays near the limit; not zero, so timer lateness is not lost throughput.
 */
const BURST_MS = 100;

/**
 * One rate, by virtual scheduling (GCRA): `due` is when everything accounted so far may have
 * been moved at the rate. A worker accounts what it moved, then waits until `due` (or not at all
 * when `due` is close enough). The rate may change between calls (a share after a worker
 * joined or left, a `pgferry throttle`): what is still due is rescaled to the new rate, so a
 * long wait under a low limit ends early once the limit is raised.
 */
export class RateLimiter {
  private due: number;
  /** The rate `due` was computed at (undefined: no limit). */
  private rate: number | undefined;

  constructor(private readonly now: () => number = Date.now) {
    this.due = now();
  }

  /** Accounts `amount` moved at `perSecond` (undefined or 0: no limit); returns the milliseconds to wait. */
  take(amount: number, perSecond: number | undefined): number {
    const now = this.rescale(perSecond);
    if (!this.rate) return 0;
    this.due = Math.max(this.due, now - BURST_MS) + (amount * 1000) / this.rate;
    return Math.max(0, this.due - now);
  }

  /** The milliseconds still to wait at `perSecond` (what was accounted before, at the rate in force now). */
  pending(perSecond: number | undefined): number {
    const now = this.rescale(perSecond);
    return this.rate ? Math.max(0, this.due - now) : 0;
  }

  private rescale(perSecond: number | undefined): number {
    const now = this.now();
    const rate = perSecond && perSecond > 0 ? perSecond : undefined;
    if (rate !== this.rate) {
      // Whatever was still due is moved at the new rate from now; lifted, nothing is due.
      this.due = rate && this.rate && this.due > now ? now + ((this.due - now) * this.rate) / rate : now;
      this.rate = rate;
    }
    return now;
  }
}

/** A row limiter and a byte limiter, for one worker. */
export class Pace {
  private readonly rows: RateLimiter;
  private readonly bytes: RateLimiter;

  constructor(now: () => number = Date.now) {
    this.rows = new RateLimiter(now);
    this.bytes = new RateLimiter(now);
  }

  /** Accounts rows and bytes moved under `limits`; returns the milliseconds to wait (the longer of the two). */
  take(rows: number, bytes: number, limits: FlowLimits): number {
    return Math.max(this.rows.take(rows, limits.rowsPerSecond), this.bytes.take(bytes, limits.bytesPerSecond));
  }

  /** The milliseconds still to wait under `limits`. */
  pending(limits: FlowLimits): number {
    return Math.max(this.rows.pending(limits.rowsPerSecond), this.bytes.pending(limits.bytesPerSecond));
  }
}

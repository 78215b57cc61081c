/**
 * A pgbench-like write load on a source database, for tests and the demo: the database is
 * written to the whole time a migration runs, without the `pgbench` binary.
 *
 * `createWorkloadSchema` creates the pgbench tables (as `pgbench -i` does) plus a few tables
 * with the shapes that change-data-capture gets wrong: out-of-line TOASTed text that is left
 * unchanged by most updates, a table without a primary key holding duplicate rows (REPLICA
 * IDENTITY FULL), a table that gets TRUNCATEd and a table whose primary key values change.
 *
 * `startWorkload` runs transactions on several connections, ~70 % pgbench's builtin TPC-B
 * and the rest spread over those tables, optionally throttled like `pgbench -R`. It stops when
 * asked, after a number of transactions or a duration, and by itself when the source is fenced
 * (made read-only, sessions terminated).
 */
import type pg from 'pg';
import { sleep, withTransaction } from '../../engine/sql.js';
import { KINDS, pickKind, seededRandom, WORKLOAD_KINDS, type Query, type WorkloadKind } from './workload-transactions.js';
import { positiveInteger, sizes, WORKLOAD_APPLICATION_NAME, type Sizes } from './workload-schema.js';

export { createWorkloadSchema, WORKLOAD_APPLICATION_NAME, WORKLOAD_ROWS_PER_SCALE, WORKLOAD_TABLES, type WorkloadSchemaOptions } from './workload-schema.js';
export { WORKLOAD_KINDS, type WorkloadKind } from './workload-transactions.js';

export interface WorkloadOptions {
  /** Concurrent connections. Default 2. */
  clients?: number;
  /** Target of committed-or-failed transactions per second over all clients, scheduled like pgbench -R. Default: as fast as possible. */
  ratePerSecond?: number;
  /** Seeds each client's choice of operations and values. Default 1. */
  seed?: number;
  /** Must match the schema. */
  accountsPerScale?: number;
  /** Must match the schema. */
  scale?: number;
  /** Stop by itself after this many transactions over all clients (like pgbench -t, but in total). */
  maxTransactions?: number;
  /** Stop by itself after this many milliseconds (like pgbench -T). */
  durationMs?: number;
}

export interface WorkloadStats {
  /** Committed transactions. */
  transactions: number;
  /** Committed transactions per kind (every kind of WORKLOAD_KINDS is present, possibly 0). */
  byKind: Record<string, number>;
  /** Failed attempts, including deadlocks and serialization failures that were then retried. */
  errors: number;
  /** Why the workload stopped by itself; undefined while it runs or when stop() ended it. */
  stoppedBecause?: string;
  /** The last error seen, for diagnostics. */
  lastError?: string;
}

export interface RunningWorkload {
  stats(): WorkloadStats;
  /** Lets every client finish its current transaction, closes the connections, and returns the final stats. */
  stop(): Promise<WorkloadStats>;
  /** Resolves (never rejects) when the workload has stopped, by itself (e.g. source made read-only) or through stop(). */
  readonly finished: Promise<WorkloadStats>;
}

/**
 * Start times of throttled transactions, like pgbench -R: each transaction gets the next slot
 * of a fixed schedule shared by all clients, however long the previous ones took, so the rate
 * does not drift. A client that is late starts at once; the schedule never lags more than
 * `maxLagMs` behind, so a long stall is followed by at most that much catching up.
 */
export class RateSchedule {
  private next: number | undefined;
  private readonly intervalMs: number;

  constructor(
    ratePerSecond: number,
    private readonly maxLagMs = 1000,
  ) {
    if (!(ratePerSecond > 0) || !Number.isFinite(ratePerSecond)) throw new Error(`ratePerSecond must be a positive number, got ${ratePerSecond}`);
    this.intervalMs = 1000 / ratePerSecond;
  }

  /** The time (same clock as `now`) at which the caller's next transaction should start. */
  claim(now: number): number {
    if (this.next === undefined || this.next < now - this.maxLagMs) this.next = this.next === undefined ? now : now - this.maxLagMs;
    const slot = this.next;
    this.next += this.intervalMs;
    return slot;
  }
}

export interface PgError extends Error {
  code?: string;
}

const RETRYABLE = new Set(['40001', '40P01']);
const MAX_TRIES = 5;

/** Why an error ends the workload, or undefined when the workload can go on. */
export function fatalReason(error: PgError, connectionError: PgError | undefined): string | undefined {
  const code = error.code ?? connectionError?.code;
  const message = error.code ? error.message : (connectionError?.message ?? error.message);
  if (code === '25006') return `source is read-only (25006 read_only_sql_transaction): ${message}`;
  if (code === '57P01') return `connection terminated by administrator (57P01 admin_shutdown): ${message}`;
  if (code?.startsWith('57P') || code?.startsWith('08')) return `connection lost (${code}): ${message}`;
  if (connectionError) return `connection lost: ${message}`;
  return undefined;
}

class Workload implements RunningWorkload {
  readonly finished: Promise<WorkloadStats>;
  private transactions = 0;
  private errors = 0;
  private readonly byKind = Object.fromEntries(WORKLOAD_KINDS.map((kind) => [kind, 0])) as Record<WorkloadKind, number>;
  /** Aborted when the workload stops: wakes the clients that wait for their schedule slot. */
  private readonly halted = new AbortController();
  private stoppedBecause: string | undefined;
  private lastError: string | undefined;
  private started = 0;
  private durationTimer: NodeJS.Timeout | undefined;
  private readonly schedule: RateSchedule | undefined;
  private readonly size: Sizes;
  private readonly seed: number;
  private readonly maxTransactions: number | undefined;

  constructor(
    private readonly connect: () => Promise<pg.Client>,
    options: WorkloadOptions,
  ) {
    const clients = positiveInteger(options.clients, 2, 'clients');
    this.size = sizes(options);
    this.seed = options.seed ?? 1;
    this.maxTransactions = options.maxTransactions === undefined ? undefined : positiveInteger(options.maxTransactions, 1, 'maxTransactions');
    this.schedule = options.ratePerSecond === undefined ? undefined : new RateSchedule(options.ratePerSecond);
    if (options.durationMs !== undefined) {
      const durationMs = options.durationMs;
      this.durationTimer = setTimeout(() => this.halt(`durationMs (${durationMs}) elapsed`), durationMs);
    }
    const loops = Array.from({ length: clients }, (_, index) => this.runClient(index));
    this.finished = Promise.all(loops).then(() => {
      clearTimeout(this.durationTimer);
      return this.stats();
    });
  }

  stats(): WorkloadStats {
    return {
      transactions: this.transactions,
      byKind: { ...this.byKind },
      errors: this.errors,
      ...(this.stoppedBecause === undefined ? {} : { stoppedBecause: this.stoppedBecause }),
      ...(this.lastError === undefined ? {} : { lastError: this.lastError }),
    };
  }

  stop(): Promise<WorkloadStats> {
    this.halt(undefined);
    return this.finished;
  }

  /** Stops every client after its current transaction; the first reason given is kept. */
  private halt(reason: string | undefined): void {
    if (this.stopping) return;
    this.stoppedBecause = reason;
    clearTimeout(this.durationTimer);
    this.halted.abort();
  }

  private get stopping(): boolean {
    return this.halted.signal.aborted;
  }

  /** Waits until the client's next slot, or less if the workload stops meanwhile. */
  private untilSlot(ms: number): Promise<void> {
    return ms <= 0 ? Promise.resolve() : sleep(ms, this.halted.signal);
  }

  private noteError(error: unknown): PgError {
    const pgError = (error instanceof Error ? error : new Error(String(error))) as PgError;
    this.lastError = pgError.code ? `${pgError.code}: ${pgError.message}` : pgError.message;
    return pgError;
  }

  private async runClient(index: number): Promise<void> {
    let client: pg.Client | undefined;
    let connectionError: PgError | undefined;
    try {
      try {
        client = await this.connect();
        client.on('error', (error: Error) => {
          // Keep the first error with a SQLSTATE (57P01 comes before "Connection terminated unexpectedly").
          if (!connectionError || (!connectionError.code && (error as PgError).code)) connectionError = error;
        });
        await client.query(`SET application_name = '${WORKLOAD_APPLICATION_NAME}'`);
      } catch (error) {
        const pgError = this.noteError(error);
        this.halt(fatalReason(pgError, connectionError) ?? `could not connect: ${pgError.message}`);
        return;
      }
      const open = client;
      const query: Query = (text, values) => open.query(text, values);
      const random = seededRandom(Math.imul(this.seed, 0x9e3779b1) ^ Math.imul(index + 1, 0x85ebca77));
      // Every client first runs each kind once (rotated by client), so short runs cover them all.
      const firstPass = WORKLOAD_KINDS.map((_, i) => WORKLOAD_KINDS[(i + index) % WORKLOAD_KINDS.length]!);
      for (let sequence = 0; !this.stopping; sequence++) {
        if (this.schedule) {
          await this.untilSlot(this.schedule.claim(performance.now()) - performance.now());
          if (this.stopping) break;
        }
        if (this.maxTransactions !== undefined) {
          if (this.started >= this.maxTransactions) {
            this.halt(`reached maxTransactions (${this.maxTransactions})`);
            break;
          }
          this.started++;
        }
        const kind = firstPass[sequence] ?? pickKind(random);
        const body = KINDS[kind]({ size: this.size, random, client: index, sequence });
        for (let attempt = 1; ; attempt++) {
          try {
            await withTransaction(open, () => body(query));
            this.transactions++;
            this.byKind[kind]++;
            break;
          } catch (error) {
            const pgError = this.noteError(error);
            this.errors++;
            const fatal = fatalReason(pgError, connectionError);
            if (fatal) {
              this.halt(fatal);
              return;
            }
            if (!RETRYABLE.has(pgError.code ?? '') || attempt >= MAX_TRIES || this.stopping) break;
          }
        }
      }
    } catch (error) {
      // Not expected: keep `finished` from rejecting and say why the workload stopped.
      this.halt(`workload failed: ${this.noteError(error).message}`);
    } finally {
      await client?.end().catch(() => undefined);
    }
  }
}

/** Starts the workload on `clients` connections from `connect`; it runs until stopped (or until it stops by itself). */
export function startWorkload(connect: () => Promise<pg.Client>, options: WorkloadOptions = {}): RunningWorkload {
  return new Workload(connect, options);
}

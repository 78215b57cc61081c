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

export interface WorkloadSchemaOptions {
  /** pgbench scale: 100 000 accounts (see accountsPerScale), 10 tellers and 1 branch per unit. Default 1. */
  scale?: number;
  /** Accounts per unit of scale. Default 100 000, as pgbench; tests use less. */
  accountsPerScale?: number;
}

/** Every table the workload creates and writes to. */
export const WORKLOAD_TABLES: string[] = [
  'public.pgbench_branches',
  'public.pgbench_tellers',
  'public.pgbench_accounts',
  'public.pgbench_history',
  'public.workload_docs',
  'public.workload_events',
  'public.workload_scratch',
  'public.workload_keys',
];

/** The workload's sessions set this application_name, so they can be found in pg_stat_activity. */
export const WORKLOAD_APPLICATION_NAME = 'pgferry-workload';

/** Rows per unit of scale of the workload's own tables. */
export const WORKLOAD_ROWS_PER_SCALE = { docs: 50, events: 500, scratch: 100, keys: 100 } as const;

/** Each document body is this many md5 hex digests: 320 × 32 = 10 240 incompressible characters. */
const DOC_BODY_DIGESTS = 320;
/** Event kinds of workload_events; seeded rows repeat, so the table holds exact duplicates. */
const EVENT_KINDS = ['login', 'click', 'purchase', 'refund', 'logout'] as const;
/** Workload accounts beyond the pgbench ones live in (naccounts, naccounts + EXTRA_ACCOUNTS]; their balance stays 0. */
const EXTRA_ACCOUNTS = 1_000_000;
/** workload_keys: each key keeps its residue modulo KEY_STRIDE, so moving it by KEY_STRIDE never collides. */
const KEY_STRIDE = 10_000_000;
const KEY_LIMIT = 2_000_000_000;
/** pgbench switches account ids to bigint from this scale on. */
const SCALE_32BIT_THRESHOLD = 20_000;

function positiveInteger(value: number | undefined, fallback: number, name: string): number {
  const result = value ?? fallback;
  if (!Number.isSafeInteger(result) || result < 1) throw new Error(`${name} must be a positive integer, got ${String(value)}`);
  return result;
}

function sizes(options: { scale?: number; accountsPerScale?: number }) {
  const scale = positiveInteger(options.scale, 1, 'scale');
  const accountsPerScale = positiveInteger(options.accountsPerScale, 100_000, 'accountsPerScale');
  return {
    scale,
    accountsPerScale,
    accounts: scale * accountsPerScale,
    tellers: scale * 10,
    branches: scale,
    docs: scale * WORKLOAD_ROWS_PER_SCALE.docs,
    events: scale * WORKLOAD_ROWS_PER_SCALE.events,
    scratch: scale * WORKLOAD_ROWS_PER_SCALE.scratch,
    keys: scale * WORKLOAD_ROWS_PER_SCALE.keys,
    bigAccounts: scale >= SCALE_32BIT_THRESHOLD || scale * accountsPerScale + EXTRA_ACCOUNTS > 2_147_483_647,
  };
}
type Sizes = ReturnType<typeof sizes>;

/**
 * Creates and fills the workload tables in the connected database, in one transaction.
 * Fails, naming them, if any of the tables already exist.
 */
export async function createWorkloadSchema(client: pg.Client, options: WorkloadSchemaOptions = {}): Promise<void> {
  const size = sizes(options);
  if (size.keys >= KEY_STRIDE) throw new Error(`scale ${size.scale} is too large for workload_keys`);
  const existing = await client.query<{ name: string; db: string }>(
    'SELECT name, current_database() AS db FROM unnest($1::text[]) AS name WHERE to_regclass(name) IS NOT NULL',
    [WORKLOAD_TABLES],
  );
  if (existing.rows.length > 0) {
    throw new Error(
      `createWorkloadSchema: database "${existing.rows[0]!.db}" already has ${existing.rows.map((r) => r.name).join(', ')}; ` +
        'drop them or use an empty database',
    );
  }
  const aidType = size.bigAccounts ? 'bigint' : 'int';
  await client.query('BEGIN');
  try {
    // pgbench -i: tables with fillfactor 100, filled server-side, primary keys added after the data.
    await client.query(`
      CREATE TABLE public.pgbench_history (tid int, bid int, aid ${aidType}, delta int, mtime timestamp, filler char(22));
      CREATE TABLE public.pgbench_tellers (tid int NOT NULL, bid int, tbalance int, filler char(84)) WITH (fillfactor = 100);
      CREATE TABLE public.pgbench_accounts (aid ${aidType} NOT NULL, bid int, abalance int, filler char(84)) WITH (fillfactor = 100);
      CREATE TABLE public.pgbench_branches (bid int NOT NULL, bbalance int, filler char(88)) WITH (fillfactor = 100);
      ALTER TABLE public.pgbench_history REPLICA IDENTITY FULL;
      CREATE TABLE public.workload_docs (id int PRIMARY KEY, body text NOT NULL, version int NOT NULL, touched_at timestamptz NOT NULL);
      CREATE TABLE public.workload_events (kind text NOT NULL, payload jsonb, at timestamptz NOT NULL);
      ALTER TABLE public.workload_events REPLICA IDENTITY FULL;
      CREATE TABLE public.workload_scratch (id bigserial PRIMARY KEY, note text);
      CREATE TABLE public.workload_keys (k int PRIMARY KEY, v text NOT NULL);
    `);
    await client.query('INSERT INTO public.pgbench_branches (bid, bbalance) SELECT bid, 0 FROM generate_series(1, $1::int) AS bid', [
      size.branches,
    ]);
    await client.query(
      'INSERT INTO public.pgbench_tellers (tid, bid, tbalance) SELECT tid, (tid - 1) / 10 + 1, 0 FROM generate_series(1, $1::int) AS tid',
      [size.tellers],
    );
    await client.query(
      `INSERT INTO public.pgbench_accounts (aid, bid, abalance, filler)
       SELECT aid, (aid - 1) / $2::${aidType} + 1, 0, '' FROM generate_series(1, $1::${aidType}) AS aid`,
      [size.accounts, size.accountsPerScale],
    );
    await client.query(`
      ALTER TABLE public.pgbench_branches ADD PRIMARY KEY (bid);
      ALTER TABLE public.pgbench_tellers ADD PRIMARY KEY (tid);
      ALTER TABLE public.pgbench_accounts ADD PRIMARY KEY (aid);
    `);
    await client.query(
      `INSERT INTO public.workload_docs (id, body, version, touched_at)
       SELECT id, (SELECT string_agg(md5(id || ':' || g), '' ORDER BY g) FROM generate_series(1, $2::int) AS g),
              1, timestamptz '2025-01-01 00:00:00+00'
         FROM generate_series(1, $1::int) AS id`,
      [size.docs, DOC_BODY_DIGESTS],
    );
    // Kind repeats every 5 rows, payload every 50, time every 100: each distinct row occurs events/100 times.
    await client.query(
      `INSERT INTO public.workload_events (kind, payload, at)
       SELECT ($2::text[])[1 + i % 5], jsonb_build_object('n', i % 50, 'source', 'seed'),
              timestamptz '2025-01-01 00:00:00+00' + (i % 100) * interval '1 minute'
         FROM generate_series(1, $1::int) AS i`,
      [size.events, EVENT_KINDS],
    );
    await client.query(`INSERT INTO public.workload_scratch (note) SELECT 'seed #' || i FROM generate_series(1, $1::int) AS i`, [
      size.scratch,
    ]);
    await client.query(`INSERT INTO public.workload_keys (k, v) SELECT k, 'key ' || k FROM generate_series(1, $1::int) AS k`, [
      size.keys,
    ]);
    await client.query(`ANALYZE ${WORKLOAD_TABLES.join(', ')}`);
    await client.query('COMMIT');
  } catch (error) {
    await client.query('ROLLBACK').catch(() => undefined);
    throw error;
  }
}

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

type Random = () => number;

/** mulberry32: small, fast, deterministic. */
function seededRandom(seed: number): Random {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Uniform integer in [low, high]. */
const between = (random: Random, low: number, high: number) => low + Math.floor(random() * (high - low + 1));

interface Context {
  size: Sizes;
  random: Random;
  client: number;
  sequence: number;
}

type Query = (text: string, values?: unknown[]) => Promise<pg.QueryResult>;

/** One transaction kind: draws its values (so a retry repeats them) and returns the statements to run between BEGIN and COMMIT. */
type Kind = (context: Context) => (query: Query) => Promise<void>;

const KINDS = {
  /** pgbench's builtin "TPC-B (sort of)". */
  tpcb: ({ size, random }) => {
    const aid = between(random, 1, size.accounts);
    const bid = between(random, 1, size.branches);
    const tid = between(random, 1, size.tellers);
    const delta = between(random, -5000, 5000);
    return async (query) => {
      await query('UPDATE public.pgbench_accounts SET abalance = abalance + $1 WHERE aid = $2', [delta, aid]);
      await query('SELECT abalance FROM public.pgbench_accounts WHERE aid = $1', [aid]);
      await query('UPDATE public.pgbench_tellers SET tbalance = tbalance + $1 WHERE tid = $2', [delta, tid]);
      await query('UPDATE public.pgbench_branches SET bbalance = bbalance + $1 WHERE bid = $2', [delta, bid]);
      await query('INSERT INTO public.pgbench_history (tid, bid, aid, delta, mtime) VALUES ($1, $2, $3, $4, CURRENT_TIMESTAMP)', [
        tid,
        bid,
        aid,
        delta,
      ]);
    };
  },
  /** Leaves the TOASTed body unchanged: logical decoding sends it as "unchanged TOAST". */
  doc_touch: ({ size, random }) => {
    const id = between(random, 1, size.docs);
    return async (query) => {
      await query('UPDATE public.workload_docs SET version = version + 1, touched_at = clock_timestamp() WHERE id = $1', [id]);
    };
  },
  doc_rewrite: ({ size, random, client, sequence }) => {
    const id = between(random, 1, size.docs);
    const salt = `${client}:${sequence}:${between(random, 0, 0x7fffffff)}`;
    return async (query) => {
      await query(
        `UPDATE public.workload_docs
            SET body = (SELECT string_agg(md5($2::text || ':' || g), '' ORDER BY g) FROM generate_series(1, $3::int) AS g),
                version = version + 1, touched_at = clock_timestamp()
          WHERE id = $1`,
        [id, salt, DOC_BODY_DIGESTS],
      );
    };
  },
  event_insert: ({ random, client, sequence }) => {
    const kind = EVENT_KINDS[between(random, 0, EVENT_KINDS.length - 1)]!;
    const payload = JSON.stringify({ n: between(random, 0, 49), client, sequence, tags: ['live', kind] });
    return async (query) => {
      await query('INSERT INTO public.workload_events (kind, payload, at) VALUES ($1, $2::jsonb, clock_timestamp())', [kind, payload]);
    };
  },
  /** The same row twice: a table without a key holding duplicates. */
  event_insert_twice: ({ random }) => {
    const kind = EVENT_KINDS[between(random, 0, EVENT_KINDS.length - 1)]!;
    const payload = JSON.stringify({ n: between(random, 0, 49), twice: true });
    return async (query) => {
      for (let i = 0; i < 2; i++) {
        await query('INSERT INTO public.workload_events (kind, payload, at) VALUES ($1, $2::jsonb, now())', [kind, payload]);
      }
    };
  },
  /** Deletes one row of possibly several identical ones. */
  event_delete: ({ random }) => {
    const kind = EVENT_KINDS[between(random, 0, EVENT_KINDS.length - 1)]!;
    return async (query) => {
      await query('DELETE FROM public.workload_events WHERE ctid = (SELECT ctid FROM public.workload_events WHERE kind = $1 LIMIT 1)', [
        kind,
      ]);
    };
  },
  scratch_insert: ({ random, client, sequence }) => {
    const rows = between(random, 2, 10);
    const note = `client ${client} txn ${sequence}`;
    return async (query) => {
      await query("INSERT INTO public.workload_scratch (note) SELECT $1::text || ' #' || g FROM generate_series(1, $2::int) AS g", [note, rows]);
    };
  },
  /** A migration's long lock on the table (COPY) must not stall the workload behind this TRUNCATE for long. */
  scratch_truncate: () => async (query) => {
    await query("SET LOCAL lock_timeout = '2s'");
    await query('TRUNCATE public.workload_scratch');
  },
  /** Primary key change: the key moves by KEY_STRIDE (or back to its residue), which no other key can hold. */
  key_update: ({ random }) => {
    const probe = between(random, 1, KEY_LIMIT);
    return async (query) => {
      const found = await query(
        `(SELECT k FROM public.workload_keys WHERE k >= $1 ORDER BY k LIMIT 1)
         UNION ALL (SELECT k FROM public.workload_keys ORDER BY k LIMIT 1) LIMIT 1`,
        [probe],
      );
      const k = (found.rows[0] as { k: number } | undefined)?.k;
      if (k === undefined) return;
      const moved = k + KEY_STRIDE > KEY_LIMIT ? k % KEY_STRIDE : k + KEY_STRIDE;
      await query('UPDATE public.workload_keys SET k = k + $2 WHERE k = $1', [k, moved - k]);
    };
  },
  /** New accounts above the pgbench range, balance 0: the TPC-B invariant still holds. */
  account_insert: ({ size, random }) => {
    const aid = size.accounts + between(random, 1, EXTRA_ACCOUNTS);
    const bid = between(random, 1, size.branches);
    return async (query) => {
      await query(
        "INSERT INTO public.pgbench_accounts (aid, bid, abalance, filler) VALUES ($1, $2, 0, 'workload') ON CONFLICT (aid) DO NOTHING",
        [aid, bid],
      );
    };
  },
  /** Deletes one of the accounts account_insert added (never a pgbench account, whose balance counts). */
  account_delete: ({ size, random }) => {
    const probe = size.accounts + between(random, 1, EXTRA_ACCOUNTS);
    return async (query) => {
      await query(
        `DELETE FROM public.pgbench_accounts
          WHERE aid > $1 AND aid = ((SELECT aid FROM public.pgbench_accounts WHERE aid >= $2 ORDER BY aid LIMIT 1)
                                    UNION ALL (SELECT aid FROM public.pgbench_accounts WHERE aid > $1 ORDER BY aid LIMIT 1) LIMIT 1)`,
        [size.accounts, probe],
      );
    };
  },
} satisfies Record<string, Kind>;

export type WorkloadKind = keyof typeof KINDS;

/** Percent of transactions per kind. */
const MIX: Record<WorkloadKind, number> = {
  tpcb: 70,
  doc_touch: 8,
  doc_rewrite: 1.5,
  event_insert: 3.5,
  event_insert_twice: 1.5,
  event_delete: 3,
  scratch_insert: 4,
  scratch_truncate: 0.5,
  key_update: 4,
  account_insert: 2,
  account_delete: 2,
};

export const WORKLOAD_KINDS = Object.keys(KINDS) as WorkloadKind[];

function pickKind(random: Random): WorkloadKind {
  let point = random() * 100;
  for (const kind of WORKLOAD_KINDS) {
    point -= MIX[kind];
    if (point < 0) return kind;
  }
  return 'tpcb';
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

interface PgError extends Error {
  code?: string;
}

const RETRYABLE = new Set(['40001', '40P01']);
const MAX_TRIES = 5;

/** Why an error ends the workload, or undefined when the workload can go on. */
function fatalReason(error: PgError, connectionError: PgError | undefined): string | undefined {
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
  private stopping = false;
  private stoppedBecause: string | undefined;
  private lastError: string | undefined;
  private started = 0;
  private readonly sleepers = new Set<{ timer: NodeJS.Timeout; wake: () => void }>();
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
      this.wakeSleepers();
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
    this.stopping = true;
    this.stoppedBecause = reason;
    clearTimeout(this.durationTimer);
    this.wakeSleepers();
  }

  private wakeSleepers(): void {
    for (const sleeper of this.sleepers) {
      clearTimeout(sleeper.timer);
      sleeper.wake();
    }
    this.sleepers.clear();
  }

  private sleep(ms: number): Promise<void> {
    if (ms <= 0 || this.stopping) return Promise.resolve();
    return new Promise((resolve) => {
      const sleeper = {
        timer: setTimeout(() => {
          this.sleepers.delete(sleeper);
          resolve();
        }, ms),
        wake: resolve,
      };
      this.sleepers.add(sleeper);
    });
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
          await this.sleep(this.schedule.claim(performance.now()) - performance.now());
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
            await query('BEGIN');
            try {
              await body(query);
              await query('COMMIT');
            } catch (error) {
              await query('ROLLBACK').catch(() => undefined);
              throw error;
            }
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

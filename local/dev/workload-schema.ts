/**
 * The workload's tables, as `pgbench -i` creates them plus a few with the shapes that
 * change-data-capture gets wrong: out-of-line TOASTed text that is left unchanged by most
 * updates, a table without a primary key holding duplicate rows (REPLICA IDENTITY FULL), a
 * table that gets TRUNCATEd and a table whose primary key values change.
 */
import type pg from 'pg';
import { withTransaction } from '../../engine/sql.js';

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
export const DOC_BODY_DIGESTS = 320;
/** Event kinds of workload_events; seeded rows repeat, so the table holds exact duplicates. */
export const EVENT_KINDS = ['login', 'click', 'purchase', 'refund', 'logout'] as const;
/** Workload accounts beyond the pgbench ones live in (naccounts, naccounts + EXTRA_ACCOUNTS]; their balance stays 0. */
export const EXTRA_ACCOUNTS = 1_000_000;
/** workload_keys: each key keeps its residue modulo KEY_STRIDE, so moving it by KEY_STRIDE never collides. */
export const KEY_STRIDE = 10_000_000;
export const KEY_LIMIT = 2_000_000_000;
/** pgbench switches account ids to bigint from this scale on. */
const SCALE_32BIT_THRESHOLD = 20_000;

export function positiveInteger(value: number | undefined, fallback: number, name: string): number {
  const result = value ?? fallback;
  if (!Number.isSafeInteger(result) || result < 1) throw new Error(`${name} must be a positive integer, got ${String(value)}`);
  return result;
}

export function sizes(options: { scale?: number; accountsPerScale?: number }) {
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
export type Sizes = ReturnType<typeof sizes>;

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
  await withTransaction(client, async () => {
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
  });
}

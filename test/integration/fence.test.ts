/**
 * The cutover fence (engine/cutover/fence.ts) on a real cluster, under concurrent writers: writes
 * are refused in new sessions (BEGIN READ WRITE included), on partitions, parents and children,
 * for TRUNCATE; replica-role sessions still write; liftFence leaves nothing behind.
 */
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { fenceState, fenceWrites, liftFence } from '../../engine/cutover/fence.js';
import { startClusters, type LocalCluster } from '../../local/dev/cluster.js';
import { clientConfig } from '../support/clusters.js';
import { waitFor } from '../support/wait.js';

let cluster: LocalCluster;
const DB = 'shop';
const MIGRATION = 'shop-move';

beforeAll(async () => {
  [cluster] = await startClusters([{ major: 17, label: 'fence' }]);
  await cluster.sql(`CREATE DATABASE ${DB}`);
  await cluster.sql(
    `CREATE TABLE accounts (id int PRIMARY KEY, balance bigint NOT NULL DEFAULT 0);
     INSERT INTO accounts SELECT g, 0 FROM generate_series(1, 100) g;
     CREATE TABLE events (id int, at date NOT NULL) PARTITION BY RANGE (at);
     CREATE TABLE events_2025 PARTITION OF events FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');
     CREATE TABLE events_2026 PARTITION OF events FOR VALUES FROM ('2026-01-01') TO ('2027-01-01');
     CREATE TABLE animals (id int, name text);
     CREATE TABLE dogs (breed text) INHERITS (animals);
     INSERT INTO dogs VALUES (1, 'Rex', 'collie');
     CREATE TABLE other (id int);`,
    DB,
  );
});

afterAll(async () => {
  await cluster?.stop();
});

/** A new session of the database (its own connection), with an error listener from the start. */
async function session(applicationName = 'app'): Promise<pg.Client> {
  const client = new pg.Client({ ...clientConfig(cluster, DB), application_name: applicationName });
  client.on('error', () => undefined);
  await client.connect();
  return client;
}

/** Runs `sql` in a new session; the error it ends with (undefined when it succeeded). */
async function attempt(sql: string, setup?: string): Promise<{ code?: string; message: string } | undefined> {
  const client = await session();
  try {
    if (setup) await client.query(setup);
    await client.query(sql);
    return undefined;
  } catch (error) {
    return { code: (error as { code?: string }).code, message: (error as Error).message };
  } finally {
    await client.end().catch(() => undefined);
  }
}

/** An application writing in a loop with BEGIN READ WRITE, reconnecting after every failure (as a pool would). */
function writer(id: number) {
  const state = { committed: 0, refusals: [] as { code?: string; message: string }[], stop: false };
  const done = (async () => {
    let client: pg.Client | undefined;
    while (!state.stop) {
      try {
        client ??= await session();
        await client.query('BEGIN READ WRITE');
        await client.query('UPDATE accounts SET balance = balance + 1 WHERE id = $1', [id]);
        await client.query('COMMIT');
        state.committed++;
      } catch (error) {
        state.refusals.push({ code: (error as { code?: string }).code, message: (error as Error).message });
        await client?.end().catch(() => undefined);
        client = undefined;
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
    }
    await client?.end().catch(() => undefined);
  })();
  return { state, done };
}

const fencedTables = [
  { schema: 'public', name: 'accounts' },
  { schema: 'public', name: 'events' },
  { schema: 'public', name: 'dogs' },
];

async function one<T>(sql: string): Promise<T> {
  const [result] = await cluster.sql(sql, DB);
  return result!.rows[0] as T;
}

describe('fenceWrites / liftFence', () => {
  it('refuses every write to the fenced tables under load, lets replica-role sessions write, and lifts without a trace', async () => {
    const writers = [1, 2, 3].map(writer);
    await waitFor('the writers to commit', () => writers.every((w) => w.state.committed > 5));
    // A session pgferry keeps (its application_name) with a transaction open before the fence, and an application's.
    const kept = await session('pgferry-test');
    await kept.query('BEGIN READ WRITE');
    await kept.query('SELECT count(*) FROM accounts');
    const ended = await session('app-open');
    await ended.query('BEGIN READ WRITE');
    await ended.query('SELECT 1');

    const admin = await session('pgferry');
    const fence = await fenceWrites(admin, fencedTables, { migration: MIGRATION });
    expect(fence).toMatchObject({ database: DB, tablesFenced: 6 });
    expect(fence.sessionsEnded).toBeGreaterThanOrEqual(1);
    const { sum: fencedSum } = await one<{ sum: string }>('SELECT sum(balance)::text AS sum FROM accounts');

    // Every writer keeps trying in new sessions; each attempt is refused by the fence's trigger.
    await waitFor('every writer to be refused by the fence', () =>
      writers.every((w) => w.state.refusals.filter((r) => r.code === '25006').length >= 3),
    );
    for (const w of writers) w.state.stop = true;
    await Promise.all(writers.map((w) => w.done));
    expect((await one<{ sum: string }>('SELECT sum(balance)::text AS sum FROM accounts')).sum).toBe(fencedSum);
    const refusal = writers[0]!.state.refusals.find((r) => r.code === '25006')!;
    expect(refusal.message).toMatch(/writes to public\.accounts are fenced by pgferry migration shop-move/);
    expect(refusal.message).toMatch(/pgferry fallback .*pgferry finish.*pgferry stop/);

    // The transactions open before the fence: pgferry's own session is refused at its write, the application's was ended.
    await expect(kept.query('UPDATE accounts SET balance = 0 WHERE id = 50')).rejects.toMatchObject({ code: '25006' });
    await kept.end();
    await expect(ended.query('UPDATE accounts SET balance = 0 WHERE id = 50')).rejects.toThrow();
    await ended.end().catch(() => undefined);

    // New sessions, each operation, partitions, parents and inheritance children.
    const refused = [
      'BEGIN READ WRITE; UPDATE accounts SET balance = balance + 1 WHERE id = 7; COMMIT',
      'BEGIN READ WRITE; INSERT INTO accounts VALUES (1000, 0); COMMIT',
      'BEGIN READ WRITE; DELETE FROM accounts WHERE id = 8; COMMIT',
      'BEGIN READ WRITE; TRUNCATE accounts; COMMIT',
      "BEGIN READ WRITE; INSERT INTO events_2025 VALUES (1, '2025-03-01'); COMMIT",
      "BEGIN READ WRITE; INSERT INTO events VALUES (1, '2026-03-01'); COMMIT",
      'BEGIN READ WRITE; TRUNCATE events; COMMIT',
      "BEGIN READ WRITE; UPDATE dogs SET name = 'Max'; COMMIT",
      "BEGIN READ WRITE; UPDATE animals SET name = 'Max'; COMMIT",
    ];
    for (const sql of refused) {
      const error = await attempt(sql);
      expect(error, sql).toMatchObject({ code: '25006', message: expect.stringContaining('fenced by pgferry migration shop-move') });
    }
    // Other tables: read-only by default in a new session, writable with BEGIN READ WRITE (the fence is on the migrated tables).
    expect(await attempt('INSERT INTO other VALUES (1)')).toMatchObject({ code: '25006', message: expect.stringMatching(/read-only transaction/) });
    expect(await attempt('BEGIN READ WRITE; INSERT INTO other VALUES (1); COMMIT')).toBeUndefined();

    // pgferry's appliers write as replicas.
    expect(await attempt('BEGIN READ WRITE; UPDATE accounts SET balance = -1 WHERE id = 9; TRUNCATE events; COMMIT', 'SET session_replication_role = replica')).toBeUndefined();
    expect(await one('SELECT balance::int FROM accounts WHERE id = 9')).toEqual({ balance: -1 });

    expect(await fenceState(admin)).toEqual({ fenced: true, tables: 6, migration: MIGRATION, readOnlyDefault: true, schema: true });
    // Idempotent.
    expect(await fenceWrites(admin, fencedTables, { migration: MIGRATION })).toMatchObject({ tablesFenced: 6 });
    expect(await one("SELECT count(*)::int AS n FROM pg_trigger WHERE tgname = 'pgferry_fence'")).toEqual({ n: 6 });

    expect(await liftFence(admin)).toEqual({ lifted: true });
    expect(await liftFence(admin)).toEqual({ lifted: false });
    expect(
      await one(`SELECT (SELECT count(*)::int FROM pg_trigger WHERE tgname = 'pgferry_fence') AS triggers,
                        (SELECT count(*)::int FROM pg_namespace WHERE nspname = 'pgferry_fence') AS schemas,
                        (SELECT count(*)::int FROM pg_proc WHERE proname = 'refuse_write') AS functions,
                        (SELECT count(*)::int FROM pg_db_role_setting s JOIN pg_database d ON d.oid = s.setdatabase WHERE d.datname = '${DB}') AS settings`),
    ).toEqual({ triggers: 0, schemas: 0, functions: 0, settings: 0 });
    expect(await attempt('UPDATE accounts SET balance = balance + 1 WHERE id = 7')).toBeUndefined();
    expect(await attempt("INSERT INTO events VALUES (2, '2026-05-01'); TRUNCATE dogs")).toBeUndefined();
    expect(await fenceState(admin)).toEqual({ fenced: false, tables: 0, migration: null, readOnlyDefault: false, schema: false });
    await admin.end();
  });

  it('completes when a transaction holds a fenced table\'s lock past the brief waits: that session is ended, its write never commits', async () => {
    const holder = await session('app-holder');
    await holder.query('BEGIN READ WRITE');
    await holder.query('UPDATE accounts SET balance = balance + 1000 WHERE id = 1');
    const before = await one<{ balance: string }>('SELECT balance::text FROM accounts WHERE id = 1');

    const admin = await session('pgferry');
    const fence = await fenceWrites(admin, fencedTables, { migration: MIGRATION });
    expect(fence).toMatchObject({ tablesFenced: 6 });
    expect(fence.sessionsEnded).toBeGreaterThanOrEqual(1);
    await expect(holder.query('COMMIT')).rejects.toThrow();
    await holder.end().catch(() => undefined);
    expect(await one('SELECT balance::text FROM accounts WHERE id = 1')).toEqual(before);
    expect(await attempt('BEGIN READ WRITE; UPDATE accounts SET balance = 0 WHERE id = 1; COMMIT')).toMatchObject({ code: '25006' });

    expect(await liftFence(admin)).toEqual({ lifted: true });
    await admin.end();
  });
});

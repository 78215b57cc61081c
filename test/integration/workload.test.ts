import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { startClusters, type LocalCluster } from '../../local/dev/cluster.js';
import {
  createWorkloadSchema,
  startWorkload,
  WORKLOAD_APPLICATION_NAME,
  WORKLOAD_KINDS,
  WORKLOAD_ROWS_PER_SCALE,
  WORKLOAD_TABLES,
  type WorkloadStats,
} from '../../local/dev/workload.js';
import { withClient } from '../support/clusters.js';

const ACCOUNTS_PER_SCALE = 1000;
const DB = 'workload';

let cluster: LocalCluster;

const one = async <T>(database: string, text: string): Promise<T> =>
  withClient(cluster, database, async (client) => (await client.query(text)).rows[0] as T);

/** Every TPC-B transaction adds the same delta to an account, a teller, a branch and the history. */
const balances = (database: string) =>
  one<{ accounts: string; tellers: string; branches: string; history: string }>(
    database,
    `SELECT (SELECT coalesce(sum(abalance), 0) FROM pgbench_accounts)::text AS accounts,
            (SELECT coalesce(sum(tbalance), 0) FROM pgbench_tellers)::text AS tellers,
            (SELECT coalesce(sum(bbalance), 0) FROM pgbench_branches)::text AS branches,
            (SELECT coalesce(sum(delta), 0) FROM pgbench_history)::text AS history`,
  );

const workloadSessions = async (database: string) =>
  Number(
    (
      await one<{ n: string }>(
        'postgres',
        `SELECT count(*) AS n FROM pg_stat_activity WHERE datname = '${database}' AND application_name = '${WORKLOAD_APPLICATION_NAME}'`,
      )
    ).n,
  );

const activeTimeouts = () => process.getActiveResourcesInfo().filter((name) => name === 'Timeout').length;

beforeAll(async () => {
  [cluster] = await startClusters([{ major: 17, label: 'workload' }]);
  await cluster.sql(`CREATE DATABASE ${DB}`);
  await withClient(cluster, DB, (client) => createWorkloadSchema(client, { accountsPerScale: ACCOUNTS_PER_SCALE }));
});

afterAll(async () => {
  await cluster?.stop();
});

describe('createWorkloadSchema', () => {
  it('creates the pgbench tables and the workload tables with their rows', async () => {
    const counts = await one<Record<string, string>>(
      DB,
      `SELECT (SELECT count(*) FROM pgbench_branches) AS branches, (SELECT count(*) FROM pgbench_tellers) AS tellers,
              (SELECT count(*) FROM pgbench_accounts) AS accounts, (SELECT count(*) FROM pgbench_history) AS history,
              (SELECT count(*) FROM workload_docs) AS docs, (SELECT count(*) FROM workload_events) AS events,
              (SELECT count(*) FROM workload_scratch) AS scratch, (SELECT count(*) FROM workload_keys) AS keys,
              (SELECT count(*) FROM (SELECT kind, payload, at FROM workload_events GROUP BY 1, 2, 3 HAVING count(*) > 1) d) AS duplicated`,
    );
    expect(counts).toEqual({
      branches: '1',
      tellers: '10',
      accounts: String(ACCOUNTS_PER_SCALE),
      history: '0',
      docs: String(WORKLOAD_ROWS_PER_SCALE.docs),
      events: String(WORKLOAD_ROWS_PER_SCALE.events),
      scratch: String(WORKLOAD_ROWS_PER_SCALE.scratch),
      keys: String(WORKLOAD_ROWS_PER_SCALE.keys),
      duplicated: '100',
    });
  });

  it('sets the replica identities and primary keys as stated', async () => {
    const rows = await withClient(cluster, DB, async (client) =>
      (
        await client.query<{ name: string; identity: string; pk: boolean }>(
          `SELECT c.oid::regclass::text AS name, c.relreplident AS identity,
                  EXISTS (SELECT FROM pg_constraint WHERE conrelid = c.oid AND contype = 'p') AS pk
             FROM pg_class c WHERE c.oid = ANY ($1::regclass[]) ORDER BY 1`,
          [WORKLOAD_TABLES],
        )
      ).rows,
    );
    expect(rows).toEqual([
      { name: 'pgbench_accounts', identity: 'd', pk: true },
      { name: 'pgbench_branches', identity: 'd', pk: true },
      { name: 'pgbench_history', identity: 'f', pk: false },
      { name: 'pgbench_tellers', identity: 'd', pk: true },
      { name: 'workload_docs', identity: 'd', pk: true },
      { name: 'workload_events', identity: 'f', pk: false },
      { name: 'workload_keys', identity: 'd', pk: true },
      { name: 'workload_scratch', identity: 'd', pk: true },
    ]);
  });

  it('stores the document bodies out of line, uncompressed', async () => {
    const toast = await one<{ min_size: number; min_length: number; toast_bytes: string }>(
      DB,
      `SELECT min(pg_column_size(body)) AS min_size, min(length(body)) AS min_length,
              (SELECT pg_relation_size(reltoastrelid) FROM pg_class WHERE oid = 'workload_docs'::regclass)::text AS toast_bytes
         FROM workload_docs`,
    );
    expect(toast.min_length).toBeGreaterThan(8192);
    // Incompressible: the stored size is about the length, far above the ~2 kB in-line limit.
    expect(toast.min_size).toBeGreaterThan(8192);
    expect(Number(toast.toast_bytes)).toBeGreaterThan(WORKLOAD_ROWS_PER_SCALE.docs * 8192);
  });

  it('refuses, naming them, when the tables exist', async () => {
    await expect(withClient(cluster, DB, (client) => createWorkloadSchema(client, { accountsPerScale: ACCOUNTS_PER_SCALE }))).rejects.toThrow(
      /database "workload" already has public\.pgbench_branches, .*public\.workload_keys/,
    );
  });
});

describe('startWorkload', () => {
  const connect = () => cluster.connect(DB);

  it('runs a fixed number of transactions of every kind and keeps the TPC-B invariant', async () => {
    const docsBefore = await one<{ bodies: string }>(DB, 'SELECT md5(string_agg(body, \'\' ORDER BY id)) AS bodies FROM workload_docs');
    const workload = startWorkload(connect, { clients: 3, seed: 7, accountsPerScale: ACCOUNTS_PER_SCALE, maxTransactions: 600 });
    const stats = await workload.finished;
    expect(stats.stoppedBecause).toBe('reached maxTransactions (600)');
    expect(stats.transactions).toBeGreaterThan(0);
    expect(stats.transactions).toBeLessThanOrEqual(600);
    // Nothing in the mix deadlocks or conflicts; a failing statement would show here.
    expect(stats.errors, stats.lastError).toBe(0);
    for (const kind of WORKLOAD_KINDS) expect(stats.byKind[kind], kind).toBeGreaterThan(0);
    expect(Object.values(stats.byKind).reduce((a, b) => a + b, 0)).toBe(stats.transactions);
    // TPC-B is the bulk of the mix.
    expect(stats.byKind.tpcb).toBeGreaterThan(stats.transactions / 2);

    const sums = await balances(DB);
    expect(sums.history).not.toBe('0');
    expect(sums).toEqual({ accounts: sums.history, tellers: sums.history, branches: sums.history, history: sums.history });

    const after = await one<{ bodies: string; versions: string; moved: string; keys: string; pgbench_accounts: string }>(
      DB,
      `SELECT md5(string_agg(body, '' ORDER BY id)) AS bodies, sum(version)::text AS versions,
              (SELECT count(*) FROM workload_keys WHERE k > ${WORKLOAD_ROWS_PER_SCALE.keys})::text AS moved,
              (SELECT count(*) FROM workload_keys)::text AS keys,
              (SELECT count(*) FROM pgbench_accounts WHERE aid <= ${ACCOUNTS_PER_SCALE})::text AS pgbench_accounts
         FROM workload_docs`,
    );
    expect(after.bodies).not.toBe(docsBefore.bodies);
    expect(Number(after.versions)).toBe(WORKLOAD_ROWS_PER_SCALE.docs + stats.byKind.doc_touch! + stats.byKind.doc_rewrite!);
    expect(Number(after.moved)).toBeGreaterThan(0);
    expect(after.keys).toBe(String(WORKLOAD_ROWS_PER_SCALE.keys));
    expect(after.pgbench_accounts).toBe(String(ACCOUNTS_PER_SCALE));
    await vi.waitFor(async () => expect(await workloadSessions(DB)).toBe(0), { timeout: 10_000 });
  });

  it('is the same sequence of operations for the same seed', async () => {
    const kinds = async () => {
      const stats = await startWorkload(connect, { clients: 1, seed: 3, accountsPerScale: ACCOUNTS_PER_SCALE, maxTransactions: 60 })
        .finished;
      return stats.byKind;
    };
    expect(await kinds()).toEqual(await kinds());
  });

  it('stop() lets a throttled workload finish its transactions, closes its connections and leaves no timer', async () => {
    const timeoutsBefore = activeTimeouts();
    const workload = startWorkload(connect, { clients: 2, ratePerSecond: 200, accountsPerScale: ACCOUNTS_PER_SCALE });
    await vi.waitFor(() => expect(workload.stats().transactions).toBeGreaterThanOrEqual(20), { timeout: 30_000, interval: 20 });
    const stats: WorkloadStats = await workload.stop();
    expect(stats.stoppedBecause).toBeUndefined();
    expect(stats.transactions).toBeGreaterThanOrEqual(20);
    expect(await workload.stop()).toEqual(stats);
    expect(await workload.finished).toEqual(stats);
    expect(activeTimeouts()).toBeLessThanOrEqual(timeoutsBefore);
    const sums = await balances(DB);
    expect(sums.accounts).toBe(sums.history);
    await vi.waitFor(async () => expect(await workloadSessions(DB)).toBe(0), { timeout: 10_000 });
  });

  it('stops by itself after durationMs', async () => {
    const stats = await startWorkload(connect, { clients: 2, ratePerSecond: 50, durationMs: 300, accountsPerScale: ACCOUNTS_PER_SCALE })
      .finished;
    expect(stats.stoppedBecause).toBe('durationMs (300) elapsed');
    expect(stats.errors, stats.lastError).toBe(0);
  });

  it('stops by itself when the source is fenced: read-only and its sessions terminated', async () => {
    const workload = startWorkload(connect, { clients: 3, accountsPerScale: ACCOUNTS_PER_SCALE, seed: 11 });
    try {
      await vi.waitFor(() => expect(workload.stats().transactions).toBeGreaterThanOrEqual(50), { timeout: 30_000, interval: 20 });
      await cluster.sql(`ALTER DATABASE ${DB} SET default_transaction_read_only = on`);
      const terminated = await one<{ n: string }>(
        'postgres',
        `SELECT count(pg_terminate_backend(pid)) AS n FROM pg_stat_activity
          WHERE datname = '${DB}' AND application_name = '${WORKLOAD_APPLICATION_NAME}'`,
      );
      expect(Number(terminated.n)).toBe(3);
      const stats = await workload.finished;
      expect(stats.stoppedBecause).toMatch(/^(connection terminated by administrator \(57P01|source is read-only \(25006)/);
      expect(stats.transactions).toBeGreaterThanOrEqual(50);
      expect(workload.stats()).toEqual(stats);
      await vi.waitFor(async () => expect(await workloadSessions(DB)).toBe(0), { timeout: 10_000 });
      const sums = await balances(DB);
      expect(sums).toEqual({ accounts: sums.history, tellers: sums.history, branches: sums.history, history: sums.history });
    } finally {
      await workload.stop();
      await cluster.sql(`ALTER DATABASE ${DB} RESET default_transaction_read_only`);
    }
  });

  it('stops by itself on its first write when the source is already read-only', async () => {
    await cluster.sql('CREATE DATABASE workload_ro');
    await withClient(cluster, 'workload_ro', (client) => createWorkloadSchema(client, { accountsPerScale: 100 }));
    await cluster.sql('ALTER DATABASE workload_ro SET default_transaction_read_only = on');
    const stats = await startWorkload(() => cluster.connect('workload_ro'), { clients: 2, accountsPerScale: 100 }).finished;
    expect(stats.stoppedBecause).toMatch(/^source is read-only \(25006/);
    expect(stats.transactions).toBe(0);
    expect(stats.errors).toBeGreaterThanOrEqual(1);
    await vi.waitFor(async () => expect(await workloadSessions('workload_ro')).toBe(0), { timeout: 10_000 });
  });

  it('stops by itself, saying why, when it cannot connect', async () => {
    const stats = await startWorkload(() => cluster.connect('no_such_database'), { clients: 2 }).finished;
    expect(stats.stoppedBecause).toMatch(/no_such_database/);
    expect(stats.transactions).toBe(0);
  });
});

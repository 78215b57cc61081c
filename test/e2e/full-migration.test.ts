import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startClusters, type LocalCluster } from '../../local/dev/cluster.js';
import { runLocalWorkflow, type LocalRunOptions } from '../../local/runner/index.js';
import { createSampleDatabase, SAMPLE_DATABASE } from '../../local/dev/sample-database.js';
import { scratchDir } from '../support/clusters.js';
import { schemaFingerprint, tableHashes } from '../support/equality.js';

let pg13: LocalCluster;
let pg15: LocalCluster;
let pg17: LocalCluster;
let pg18: LocalCluster;
const scratch = scratchDir('e2e');

beforeAll(async () => {
  [pg13, pg15, pg17, pg18] = await startClusters([
    { major: 13, label: 'e2e13' },
    { major: 15, label: 'e2e15' },
    { major: 17, label: 'e2e17' },
    { major: 18, label: 'e2e18' },
  ]);
  await Promise.all([pg13, pg15, pg17].map((cluster) => createSampleDatabase(cluster)));
});

afterAll(async () => {
  await Promise.all([pg13, pg15, pg17, pg18].map((c) => c?.stop()));
  scratch.remove();
});

function specFor(name: string, source: LocalCluster, sourceDb: string, target: LocalCluster, targetDb: string, extra: object = {}) {
  return {
    name,
    mode: 'full',
    source: { secret: scratch.secretFor(`${name}-source`, source), database: sourceDb },
    target: { secret: scratch.secretFor(`${name}-target`, target), database: targetDb },
    fullLoad: { parallelism: 3 },
    ...extra,
  };
}

async function expectIdentical(source: LocalCluster, sourceDb: string, target: LocalCluster, targetDb: string) {
  const [s, t] = [await source.connect(sourceDb), await target.connect(targetDb)];
  try {
    expect(await tableHashes(t)).toEqual(await tableHashes(s));
    expect(await schemaFingerprint(t)).toEqual(await schemaFingerprint(s));
  } finally {
    await Promise.all([s.end(), t.end()]);
  }
}

const runOptions: LocalRunOptions = { retryIntervalOverrides: { CopyWorker: 0 } };

describe.each([
  ['13 → 17', () => pg13, () => pg17, 'shop_from13'],
  ['15 → 17', () => pg15, () => pg17, 'shop_from15'],
  ['17 → 18', () => pg17, () => pg18, 'shop_from17'],
])('full migration %s through the workflow', (_pair, source, target, targetDb) => {
  const name = `e2e-${targetDb.replace(/_/g, '-')}`;

  it('migrates the sample database: target equals source, data and schema', async () => {
    await target().sql(`CREATE DATABASE ${targetDb}`);
    const states = new Set<string>();
    const result = await runLocalWorkflow(specFor(name, source(), SAMPLE_DATABASE, target(), targetDb), {
      ...runOptions,
      onEvent: (e) => e.type === 'StateEntered' && states.add(e.state.name),
    });
    expect(result, JSON.stringify(result)).toMatchObject({ status: 'SUCCEEDED' });
    // Foreign keys, triggers and views are left to the post-data task.
    expect(states).toContain('SchemaPostData');
    await expectIdentical(source(), SAMPLE_DATABASE, target(), targetDb);
    const [comparisons] = await target().sql(
      `SELECT count(*) FILTER (WHERE status = 'match')::int AS matched, count(*)::int AS total FROM pgferry.comparisons WHERE migration = '${name}'`,
      targetDb,
    );
    expect(comparisons!.rows[0].total).toBe(17);
    expect(comparisons!.rows[0].matched).toBe(comparisons!.rows[0].total);
    // Plain tables get their keys and indexes while the load goes on; post-data does the rest.
    const [jobs] = await target().sql(
      `SELECT count(*)::int AS total, count(*) FILTER (WHERE state = 'done')::int AS done FROM pgferry.index_jobs WHERE migration = '${name}'`,
      targetDb,
    );
    expect(jobs!.rows[0].total).toBeGreaterThan(10);
    expect(jobs!.rows[0].done).toBe(jobs!.rows[0].total);
  });

  it('refuses to run over existing tables by default, listing every conflict', async () => {
    const result = await runLocalWorkflow(specFor(name, source(), SAMPLE_DATABASE, target(), targetDb), runOptions);
    expect(result.status).toBe('FAILED');
    expect(result.error).toBe('SchemaConflict');
    for (const table of ['shop.customers', 'shop.orders', 'shop.order_items']) expect(result.cause).toContain(table);
    expect(result.cause).toMatch(/existingTables/);
  });
});

describe('existing tables on the target', () => {
  const targetDb = 'shop_from15';
  const name = 'e2e-shop-from15';

  it('drop: replaces changed tables and still ends identical', async () => {
    await pg17.sql('ALTER TABLE shop.reviews ADD COLUMN extra int; DELETE FROM shop.payments WHERE order_id < 10', targetDb);
    const result = await runLocalWorkflow(specFor(name, pg15, SAMPLE_DATABASE, pg17, targetDb, { schema: { existingTables: 'drop' } }), runOptions);
    expect(result, JSON.stringify(result)).toMatchObject({ status: 'SUCCEEDED' });
    await expectIdentical(pg15, SAMPLE_DATABASE, pg17, targetDb);
  });

  it('truncate: refused over a finished run without force, the target untouched; with force it empties the tables and loads them again', async () => {
    await pg17.sql("INSERT INTO \"Sales Data\".\"MixedCase\" VALUES (99999, 1, 'stray', 'x')", targetDb);
    const spec = specFor(name, pg15, SAMPLE_DATABASE, pg17, targetDb, { schema: { existingTables: 'truncate' } });
    const refused = await runLocalWorkflow(spec, runOptions);
    expect(refused).toMatchObject({ status: 'FAILED', error: 'pgferry.DestructiveRerun' });
    expect(refused.cause).toMatch(/would truncate the \d+ table\(s\) it loaded \(.*shop\.customers/);
    expect(refused.cause).toContain('--force');
    const [stray] = await pg17.sql('SELECT count(*)::int AS n FROM "Sales Data"."MixedCase" WHERE "Id" = 99999', targetDb);
    expect(stray!.rows[0].n).toBe(1);
    const [phase] = await pg17.sql(`SELECT phase FROM pgferry.migrations WHERE name = '${name}'`, targetDb);
    expect(phase!.rows[0].phase).toBe('done');
    const result = await runLocalWorkflow({ spec, force: true }, runOptions);
    expect(result, JSON.stringify(result)).toMatchObject({ status: 'SUCCEEDED' });
    await expectIdentical(pg15, SAMPLE_DATABASE, pg17, targetDb);
  });

  it('ignore: keeps existing tables as they are and loads into them', async () => {
    const tables = (await pg17.sql(
      `SELECT string_agg(format('%I.%I', schemaname, tablename), ', ') AS list FROM pg_tables WHERE schemaname IN ('shop', 'Sales Data')`,
      targetDb,
    ))[0]!.rows[0].list;
    await pg17.sql(`TRUNCATE ${tables}`, targetDb);
    const result = await runLocalWorkflow(specFor(name, pg15, SAMPLE_DATABASE, pg17, targetDb, { schema: { existingTables: 'ignore' } }), runOptions);
    expect(result, JSON.stringify(result)).toMatchObject({ status: 'SUCCEEDED' });
    await expectIdentical(pg15, SAMPLE_DATABASE, pg17, targetDb);
  });
});

describe('a copy worker killed in the middle of a unit', () => {
  it('has its unit redone, and the target still equals the source', async () => {
    await pg15.sql('CREATE DATABASE killtest');
    await pg15.sql(
      `CREATE TABLE big (id bigint PRIMARY KEY, payload text NOT NULL, amount numeric NOT NULL);
       INSERT INTO big SELECT g, repeat(md5(g::text), 3), g / 7.0 FROM generate_series(1, 400000) g;
       CREATE TABLE small (id int PRIMARY KEY, note text);
       INSERT INTO small SELECT g, 'n' || g FROM generate_series(1, 1000) g;`,
      'killtest',
    );
    await pg17.sql('CREATE DATABASE killtest');
    const workers = new Set<number>();
    let killed = 0;
    const watcher = await pg17.connect('killtest');
    let done = false;
    const killer = (async () => {
      // Kill every copy worker as soon as the big table's COPY is running on the target.
      while (!done && killed === 0) {
        const { rows } = await watcher.query(
          "SELECT 1 FROM pg_stat_activity WHERE datname = 'killtest' AND state = 'active' AND query LIKE 'COPY \"public\".\"big\"%'",
        );
        if (rows.length > 0 && workers.size > 0) {
          for (const pid of workers) process.kill(pid, 'SIGKILL');
          killed = workers.size;
        }
        await new Promise((r) => setTimeout(r, 5));
      }
    })();
    const result = await runLocalWorkflow(specFor('e2e-killed-worker', pg15, 'killtest', pg17, 'killtest', { fullLoad: { parallelism: 2 } }), {
      ...runOptions,
      onTaskStarted: ({ task, pid }) => task === 'Copy' && workers.add(pid),
      onEvent: (e) => e.type === 'StateExited' && e.state.name === 'FullLoad' && (done = true),
    });
    done = true;
    await killer;
    await watcher.end();
    expect(result, JSON.stringify(result)).toMatchObject({ status: 'SUCCEEDED' });
    expect(killed).toBeGreaterThan(0);
    const [units] = await pg17.sql(
      "SELECT attempts, state FROM pgferry.units JOIN pgferry.unit_progress USING (migration, id) WHERE migration = 'e2e-killed-worker' AND source_table = 'big'",
      'killtest',
    );
    expect(units!.rows).toEqual([{ attempts: 2, state: 'done' }]);
    await expectIdentical(pg15, 'killtest', pg17, 'killtest');
  });
});

describe('a database whose indexes and constraints are all built during the load', () => {
  it('needs no post-data task: the full load reports post-data, and the target equals the source', async () => {
    await pg15.sql('CREATE DATABASE keysonly');
    await pg15.sql(
      `CREATE TABLE accounts (id int PRIMARY KEY, email text NOT NULL UNIQUE, balance numeric NOT NULL CHECK (balance >= 0));
       CREATE INDEX accounts_email_lower ON accounts (lower(email));
       CREATE TABLE events (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, account_id int NOT NULL, at timestamptz NOT NULL);
       CREATE INDEX events_account ON events (account_id, at);
       INSERT INTO accounts SELECT g, 'user' || g || '@example.com', g / 3.0 FROM generate_series(1, 2000) g;
       INSERT INTO events (account_id, at) SELECT g % 2000 + 1, timestamptz '2026-01-01' + g * interval '1 minute' FROM generate_series(1, 5000) g;`,
      'keysonly',
    );
    await pg17.sql('CREATE DATABASE keysonly');
    const states = new Set<string>();
    const result = await runLocalWorkflow(specFor('e2e-keys-only', pg15, 'keysonly', pg17, 'keysonly', { fullLoad: { parallelism: 2 } }), {
      ...runOptions,
      onEvent: (e) => e.type === 'StateEntered' && states.add(e.state.name),
    });
    expect(result, JSON.stringify(result)).toMatchObject({ status: 'SUCCEEDED' });
    expect(states).toContain('FinishFullLoad');
    expect(states).not.toContain('SchemaPostData');
    await expectIdentical(pg15, 'keysonly', pg17, 'keysonly');
    const [objects] = await pg17.sql(
      `SELECT kind, identity, status, detail FROM pgferry.schema_objects WHERE migration = 'e2e-keys-only' AND phase = 'post-data' ORDER BY kind, identity`,
      'keysonly',
    );
    const built = { status: 'created', detail: 'built as soon as its table was loaded' };
    expect(objects!.rows).toEqual([
      { kind: 'constraint', identity: 'public.accounts.accounts_balance_check', ...built },
      { kind: 'constraint', identity: 'public.accounts.accounts_email_key', ...built },
      { kind: 'constraint', identity: 'public.accounts.accounts_pkey', ...built },
      { kind: 'constraint', identity: 'public.events.events_pkey', ...built },
      { kind: 'index', identity: 'public.accounts_email_lower', ...built },
      { kind: 'index', identity: 'public.events_account', ...built },
    ]);
  });
});

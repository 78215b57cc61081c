import type pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { listTables } from '../../engine/catalog/tables.js';
import { beginMigration, ensureControlSchema } from '../../engine/control/index.js';
import { planUnits, savePlan, targetFacts, targetOf } from '../../engine/load/planner.js';
import { exportSnapshot } from '../../engine/snapshot.js';
import { runCopyWorker } from '../../engine/load/worker.js';
import { parseSpec } from '../../engine/spec/index.js';
import { startClusters, type LocalCluster } from '../../local/dev/cluster.js';
import { tableHashes } from '../support/equality.js';

let source: LocalCluster;
let target: LocalCluster;

const DDL = `
CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy');
CREATE TABLE wide (id bigint PRIMARY KEY, f8 float8, n numeric, ts timestamptz, iv interval, b bytea, j jsonb, arr int[], t text);
CREATE TABLE moods (id int PRIMARY KEY, m mood, ms mood[]);
CREATE TABLE filtered (id int PRIMARY KEY, region text, secret text, total int GENERATED ALWAYS AS (id * 2) STORED);
CREATE TABLE nopk (a int, b text);
CREATE TABLE refs (id int PRIMARY KEY, r regclass, t regtype, p regprocedure, rs regclass[]);
CREATE TABLE no_columns ();
CREATE TABLE vectors (id int PRIMARY KEY, v int2vector, o oidvector);`;

const DATA = `
INSERT INTO wide SELECT g, CASE g % 5 WHEN 0 THEN 'NaN' WHEN 1 THEN '-0' WHEN 2 THEN 1e-308 ELSE g / 3.0 END,
       g * 1.000000001, timestamptz '2025-01-01 00:00:00.000001+00' + g * interval '1.000001 s', g * interval '1 day 1 us',
       decode(md5(g::text), 'hex'), jsonb_build_object('g', g, 's', repeat('x', g % 50)), ARRAY[g, NULL, -g], repeat(md5(g::text), 40)
  FROM generate_series(1, 20000) g;
INSERT INTO moods SELECT g, (ARRAY['sad','ok','happy']::mood[])[1 + g % 3], ARRAY['ok', 'happy']::mood[] FROM generate_series(1, 100) g;
INSERT INTO filtered (id, region, secret) SELECT g, CASE WHEN g % 2 = 0 THEN 'eu' ELSE 'us' END, 'pw' || g FROM generate_series(1, 100) g;
INSERT INTO nopk SELECT g % 10, 'dup' FROM generate_series(1, 50) g;
INSERT INTO refs VALUES (1, 'wide', 'mood', 'lower(text)', '{wide,moods}'), (2, 'pg_class', 'mood[]', 'int4pl(int4,int4)', NULL);
INSERT INTO no_columns SELECT FROM generate_series(1, 7);
INSERT INTO vectors VALUES (1, '', ''), (2, '1 2 3', '23 25');`;

const specFor = (name: string, extra: object = {}) =>
  parseSpec({
    name,
    source: { secret: 'env:UNUSED_SOURCE' },
    target: { secret: 'env:UNUSED_TARGET' },
    fullLoad: { splitTablesLargerThan: '1MB', parallelism: 3 },
    objects: { tables: { 'public.filtered': { where: "region = 'eu'", excludeColumns: ['secret'] } } },
    ...extra,
  });

beforeAll(async () => {
  [source, target] = await startClusters([{ major: 15, label: 'load-source' }, { major: 17, label: 'load-target' }]);
  await source.sql('CREATE DATABASE app');
  await source.sql(DDL + DATA + 'ANALYZE;', 'app');
});

afterAll(async () => {
  await Promise.all([source, target].map((c) => c?.stop()));
});

async function prepareTarget(db: string, name: string, spec: ReturnType<typeof specFor>) {
  await target.sql(`CREATE DATABASE ${db}`);
  await target.sql(DDL, db);
  const [src, tgt] = [await source.connect('app'), await target.connect(db)];
  await ensureControlSchema(tgt);
  await beginMigration(tgt, name, spec);
  const tables = await listTables(src, spec.objects);
  const units = planUnits({
    tables,
    target: await targetFacts(tgt, tables.map(targetOf)),
    spec,
    sourceVersionNum: 150000,
  });
  await savePlan(tgt, name, tables, units);
  await src.end();
  return { tgt, units };
}

function worker(db: string, name: string, snapshot: string, maxAttempts = 3) {
  return runCopyWorker({
    migration: name,
    snapshot,
    maxAttempts,
    connectSource: () => source.connect('app'),
    connectTarget: () => target.connect(db),
    backoffMs: () => 10,
  });
}

describe('the full load', () => {
  let holder: pg.Client;
  let snapshot: string;

  beforeAll(async () => {
    holder = await source.connect('app');
    snapshot = await exportSnapshot(holder);
    // Written after the snapshot: the load must not see it.
    await source.sql("INSERT INTO wide (id, t) VALUES (999999, 'after the snapshot'); DELETE FROM moods WHERE id = 1", 'app');
  });

  afterAll(async () => {
    await holder.query('COMMIT');
    await holder.end();
    await source.sql("DELETE FROM wide WHERE id = 999999; INSERT INTO moods VALUES (1, 'ok', '{ok,happy}')", 'app');
  });

  it('plans ctid ranges for large tables, binary COPY for built-in types and text for user types', async () => {
    const { tgt, units } = await prepareTarget('plan_check', 'plan-check', specFor('plan-check'));
    await tgt.end();
    const wide = units.filter((u) => u.source.name === 'wide');
    expect(wide.length).toBeGreaterThan(1);
    expect(wide.every((u) => u.binaryFormat && !u.freeze)).toBe(true);
    expect(wide.filter((u) => u.toPage === undefined)).toHaveLength(1);
    expect(units.find((u) => u.source.name === 'moods')).toMatchObject({ binaryFormat: false, freeze: true });
    // reg* values are OIDs in binary: they travel as text, by name.
    expect(units.find((u) => u.source.name === 'refs')).toMatchObject({ binaryFormat: false });
    // An empty int2vector/oidvector sent in binary by 13 is refused by 14+.
    expect(units.find((u) => u.source.name === 'vectors')).toMatchObject({ binaryFormat: false });
    expect(units.find((u) => u.source.name === 'filtered')).toMatchObject({ columns: ['id', 'region'], where: "region = 'eu'" });
  });

  it('copies every unit exactly once with parallel workers, at the snapshot', async () => {
    const spec = specFor('load-parallel');
    const { tgt, units } = await prepareTarget('parallel', 'load-parallel', spec);
    const summaries = await Promise.all([1, 2, 3].map(() => worker('parallel', 'load-parallel', snapshot)));
    expect(summaries.reduce((n, s) => n + s.units, 0)).toBe(units.length);
    const { rows } = await tgt.query(
      "SELECT count(*) FILTER (WHERE state = 'done')::int AS done, max(attempts) AS attempts FROM pgferry.units JOIN pgferry.unit_progress USING (migration, id) WHERE migration = 'load-parallel'",
    );
    expect(rows[0]).toEqual({ done: units.length, attempts: 1 });
    await tgt.end();

    const [src, dst] = [await source.connect('app'), await target.connect('parallel')];
    await src.query('BEGIN ISOLATION LEVEL REPEATABLE READ');
    await src.query(`SET TRANSACTION SNAPSHOT '${snapshot}'`);
    await src.query("CREATE TEMP TABLE expected_filtered AS SELECT id, region, NULL::text AS secret FROM filtered WHERE region = 'eu'");
    const expected = await tableHashes(src);
    const actual = await tableHashes(dst);
    await src.query('ROLLBACK');
    await Promise.all([src.end(), dst.end()]);
    for (const table of ['public.wide', 'public.moods', 'public.nopk', 'public.refs', 'public.no_columns', 'public.vectors']) expect(actual[table]).toBe(expected[table]);
    const [noColumns] = await target.sql('SELECT count(*)::int AS n FROM no_columns', 'parallel');
    expect(noColumns!.rows).toEqual([{ n: 7 }]);
    const [refs] = await target.sql('SELECT r::text, t::text, p::text, rs::text FROM refs ORDER BY id', 'parallel');
    expect(refs!.rows).toEqual([
      { r: 'wide', t: 'mood', p: 'lower(text)', rs: '{wide,moods}' },
      { r: 'pg_class', t: 'mood[]', p: 'int4pl(integer,integer)', rs: null },
    ]);
    const [filtered] = await target.sql('SELECT count(*)::int AS n, count(secret)::int AS secrets, sum(total)::int AS total FROM filtered', 'parallel');
    expect(filtered!.rows[0]).toEqual({ n: 50, secrets: 0, total: 5100 });
  });

  it('marks a unit failed after its attempts, with the reason, and copies the rest', async () => {
    const spec = specFor('load-failing');
    const { tgt } = await prepareTarget('failing', 'load-failing', spec);
    await tgt.query('ALTER TABLE moods ADD CONSTRAINT never CHECK (id < 0)');
    const summary = await worker('failing', 'load-failing', snapshot, 2);
    expect(summary.failedAttempts).toBe(2);
    const { rows } = await tgt.query(
      "SELECT source_table, state, attempts, last_error FROM pgferry.units JOIN pgferry.unit_progress USING (migration, id) WHERE migration = 'load-failing' AND state <> 'done'",
    );
    expect(rows).toEqual([
      { source_table: 'moods', state: 'failed', attempts: 2, last_error: expect.stringContaining('violates check constraint "never"') },
    ]);
    const [count] = await target.sql('SELECT count(*)::int AS n FROM moods', 'failing');
    expect(count!.rows[0].n).toBe(0);
    await tgt.end();
  });

  it('fails a unit whose source errors in the middle of its COPY, keeping none of its rows', async () => {
    const spec = specFor('load-midway', { objects: { tables: { 'public.wide': { where: 'id / (id - 15000) IS NOT NULL' } } } });
    const { tgt } = await prepareTarget('midway', 'load-midway', spec);
    await worker('midway', 'load-midway', snapshot, 1);
    const { rows } = await tgt.query(
      "SELECT state, last_error FROM pgferry.units WHERE migration = 'load-midway' AND source_table = 'wide' AND state <> 'done'",
    );
    expect(rows).toEqual([{ state: 'failed', last_error: 'division by zero' }]);
    const { rows: counts } = await tgt.query(
      `SELECT (SELECT count(*) FROM wide)::int AS loaded,
              (SELECT sum(rows_copied) FROM pgferry.units WHERE migration = 'load-midway' AND source_table = 'wide' AND state = 'done')::int AS done`,
    );
    expect(counts[0].loaded).toBe(counts[0].done);
    expect(counts[0].loaded).toBeLessThan(19999);
    await tgt.end();
  });

  it('fails readably when the snapshot is gone', async () => {
    const spec = specFor('load-nosnap');
    const { tgt } = await prepareTarget('nosnap', 'load-nosnap', spec);
    await worker('nosnap', 'load-nosnap', '00000003-0000FFFF-1', 1);
    const { rows } = await tgt.query("SELECT DISTINCT last_error FROM pgferry.units WHERE migration = 'load-nosnap'");
    expect(rows[0].last_error).toMatch(/Cannot read the source at the load's snapshot .*run the migration again/);
    await tgt.end();
  });
});

import type pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { listTables } from '../../engine/catalog/tables.js';
import { compareLargeObjects } from '../../engine/compare/large-objects.js';
import { compareMaterializedViews } from '../../engine/compare/materialized-views.js';
import type { SecretsProvider } from '../../engine/connect/index.js';
import { beginMigration, ensureControlSchema, unfinishedUnits } from '../../engine/control/index.js';
import { resyncTablesStep } from '../../engine/steps/resync-tables.js';
import { resyncLargeObjects } from '../../engine/cutover/large-objects.js';
import { refreshMaterializedViews } from '../../engine/cutover/materialized-views.js';
import { largeObjectOwnersMissing, LARGE_OBJECTS, planLargeObjects } from '../../engine/load/large-objects.js';
import { planUnits, savePlan, targetFacts, targetOf } from '../../engine/load/planner.js';
import { runCopyWorker } from '../../engine/load/worker.js';
import { checkLargeObjects, checkMaterializedViews } from '../../engine/precheck/large-objects.js';
import { exportSnapshot } from '../../engine/snapshot.js';
import { parseSpec } from '../../engine/spec/index.js';
import { startClusters, type LocalCluster } from '../../local/dev/cluster.js';

let source: LocalCluster;
let target: LocalCluster;

const ROLES = `CREATE ROLE lo_owner; CREATE ROLE lo_reader;`;

/** Large objects of every shape: empty, small, several chunks (3.5 MB), with owner, grants and comments. */
const LARGE_OBJECTS_SQL = `
SELECT lo_create(70001);
SELECT lo_from_bytea(70002, 'hello large object');
SELECT lo_from_bytea(70003, (SELECT string_agg(decode(md5(g::text), 'hex'), ''::bytea) FROM generate_series(1, 229376) g));
SELECT lo_from_bytea(70004, '\\x00ff00ff'::bytea);
ALTER LARGE OBJECT 70003 OWNER TO lo_owner;
GRANT SELECT ON LARGE OBJECT 70003 TO lo_reader;
GRANT SELECT ON LARGE OBJECT 70002 TO PUBLIC;
GRANT UPDATE ON LARGE OBJECT 70002 TO lo_reader WITH GRANT OPTION;
COMMENT ON LARGE OBJECT 70003 IS 'three and a half megabytes, it''s "quoted"';
COMMENT ON LARGE OBJECT 70001 IS 'empty';
CREATE ROLE lo_ghost;
ALTER LARGE OBJECT 70004 OWNER TO lo_ghost;`;

/** The test's own oracle: every large object's bytes, owner, ACL and comment. */
async function largeObjects(cluster: LocalCluster, database: string) {
  const [result] = await cluster.sql(
    `SELECT oid::int8 AS oid, md5(lo_get(oid)) AS md5, length(lo_get(oid)) AS size, pg_get_userbyid(lomowner) AS owner, lomacl::text AS acl,
            obj_description(oid, 'pg_largeobject') AS comment
       FROM pg_largeobject_metadata ORDER BY oid`,
    database,
  );
  return result!.rows;
}

const specFor = (name: string) =>
  parseSpec({ name, source: { secret: 'env:UNUSED_SOURCE' }, target: { secret: 'env:UNUSED_TARGET' }, fullLoad: { splitTablesLargerThan: '1MB', parallelism: 2 } });

beforeAll(async () => {
  [source, target] = await startClusters([{ major: 15, label: 'lo-source' }, { major: 17, label: 'lo-target' }]);
  await source.sql(ROLES);
  await target.sql(ROLES);
  await source.sql('CREATE DATABASE app');
  await source.sql('CREATE TABLE t (id int PRIMARY KEY, v text);' + LARGE_OBJECTS_SQL, 'app');
});

afterAll(async () => {
  await Promise.all([source, target].map((c) => c?.stop()));
});

describe('large objects', () => {
  let holder: pg.Client;
  let snapshot: string;

  beforeAll(async () => {
    await target.sql('CREATE DATABASE app');
    await target.sql('CREATE TABLE t (id int PRIMARY KEY, v text)', 'app');
    holder = await source.connect('app');
    snapshot = await exportSnapshot(holder);
    // Written after the snapshot: the load must not see it.
    await source.sql("SELECT lo_from_bytea(70005, 'after the snapshot'); SELECT lo_put(70002, 0, 'J')", 'app');
  });

  afterAll(async () => {
    await holder?.query('COMMIT');
    await holder?.end();
  });

  it('are copied by the full load at its snapshot, in units of the plan, with their OIDs, bytes, owners, grants and comments', async () => {
    const spec = specFor('lo-load');
    const [src, tgt] = [await source.connect('app'), await target.connect('app')];
    await ensureControlSchema(tgt);
    await beginMigration(tgt, 'lo-load', spec);
    const tables = await listTables(src, spec.objects);
    const plan = await planLargeObjects(src, spec.fullLoad.splitTablesLargerThan);
    const units = planUnits({ tables, target: await targetFacts(tgt, tables.map(targetOf)), spec, sourceVersionNum: 150000, largeObjects: plan.units });
    await savePlan(tgt, 'lo-load', tables, units, plan.table ? [plan.table] : []);
    expect(units.filter((u) => u.source.name === LARGE_OBJECTS.name).length).toBeGreaterThan(1);
    const missing = await largeObjectOwnersMissing(src, tgt);
    await Promise.all([src.end(), tgt.end()]);

    const summaries = await Promise.all(
      [1, 2].map(() =>
        runCopyWorker({ migration: 'lo-load', snapshot, maxAttempts: 1, connectSource: () => source.connect('app'), connectTarget: () => target.connect('app') }),
      ),
    );
    expect(summaries.reduce((n, s) => n + s.failedAttempts, 0)).toBe(0);

    const reader = await source.connect('app');
    await reader.query(`BEGIN ISOLATION LEVEL REPEATABLE READ; SET TRANSACTION SNAPSHOT '${snapshot}'`);
    const expected = await reader.query(
      `SELECT oid::int8 AS oid, md5(lo_get(oid)) AS md5, length(lo_get(oid)) AS size, pg_get_userbyid(lomowner) AS owner, lomacl::text AS acl,
              obj_description(oid, 'pg_largeobject') AS comment FROM pg_largeobject_metadata ORDER BY oid`,
    );
    await reader.end();
    const actual = await largeObjects(target, 'app');
    const login = target.connection.username;
    // lo_ghost does not exist on the target: what it owns belongs to the login user, and the report says so.
    const expectedRows = expected.rows.map((r) => (r.owner === 'lo_ghost' ? { ...r, owner: login } : r));
    expect(actual).toEqual(expectedRows);
    expect(actual.map((r) => r.oid)).toEqual(['70001', '70002', '70003', '70004']);
    expect(actual.find((r) => r.oid === '70003')).toMatchObject({ size: 3670016, owner: 'lo_owner', acl: '{lo_owner=rw/lo_owner,lo_reader=r/lo_owner}' });
    expect(missing).toEqual([expect.objectContaining({ kind: 'large object role', identity: 'lo_ghost', status: 'not_migrated' })]);
    const [progress] = await target.sql("SELECT sum(rows_copied)::int AS objects, sum(bytes_copied)::int AS bytes FROM pgferry.units WHERE source_table = 'pg_largeobject'", 'app');
    expect(progress!.rows[0]).toEqual({ objects: 4, bytes: 3670016 + 18 + 4 });
  });

  it('are compared one by one: a single wrong byte on the target is found', async () => {
    const connect = (cluster: LocalCluster) => () => cluster.connect('app');
    const equal = await compareLargeObjects(connect(source), connect(target), { snapshot, maxDifferences: 10 });
    expect(equal).toMatchObject({ status: 'match', sourceRows: 4, targetRows: 4 });
    await target.sql("SELECT lo_put(70003, 2000000, '\\x00'::bytea)", 'app');
    const corrupted = await compareLargeObjects(connect(source), connect(target), { snapshot, maxDifferences: 10 });
    expect(corrupted).toMatchObject({ status: 'mismatch', differences: [{ key: { oid: '70003' }, kind: 'different' }] });
  });

  it('are resynced: created, changed and unlinked ones are put right, and only those are copied', async () => {
    await source.sql(
      `SELECT lo_unlink(70001); SELECT lo_put(70003, 3000000, 'changed'::bytea); COMMENT ON LARGE OBJECT 70002 IS 'new comment';
       SELECT lo_from_bytea(70006, 'created while replicating')`,
      'app',
    );
    const [src, tgt] = [await source.connect('app'), await target.connect('app')];
    const resync = await resyncLargeObjects(src, tgt);
    await Promise.all([src.end(), tgt.end()]);
    expect(resync).toMatchObject({ created: ['70005', '70006'], changed: ['70002', '70003'], unlinked: ['70001'] });
    const login = target.connection.username;
    const expected = (await largeObjects(source, 'app')).map((r) => (r.owner === 'lo_ghost' ? { ...r, owner: login } : r));
    expect(await largeObjects(target, 'app')).toEqual(expected);
    const [again, tgt2] = [await source.connect('app'), await target.connect('app')];
    expect(await resyncLargeObjects(again, tgt2)).toMatchObject({ created: [], changed: [], unlinked: [], bytes: 0 });
    await Promise.all([again.end(), tgt2.end()]);
  });

  it('left in a full+cdc load that paused are not copied again on resume: the resync at cutover copies them', async () => {
    await target.sql('CREATE DATABASE resumed');
    const spec = specFor('lo-resume');
    const [src, tgt] = [await source.connect('app'), await target.connect('resumed')];
    try {
      await ensureControlSchema(tgt);
      await beginMigration(tgt, 'lo-resume', spec);
      const plan = await planLargeObjects(src, spec.fullLoad.splitTablesLargerThan);
      const units = planUnits({ tables: [], target: { columnTypes: new Map(), referenced: new Set() }, spec, sourceVersionNum: 150000, largeObjects: plan.units });
      await savePlan(tgt, 'lo-resume', [], units, [plan.table!]);
      const context = { migration: 'lo-resume', spec, connectSource: () => source.connect('app'), connectTarget: () => target.connect('resumed'), log: () => undefined };
      // No table is left, so no temporary slot is needed (the secrets are never read).
      expect(await resyncTablesStep(context, { secrets: {} as SecretsProvider })).toBe(0);
      expect(await unfinishedUnits(tgt, 'lo-resume')).toEqual([]);
    } finally {
      await Promise.all([src.end(), tgt.end()]);
    }
  });

  it('are named in precheck with their count, as resynced at cutover in CDC modes', async () => {
    const src = await source.connect('app');
    try {
      expect(await checkLargeObjects(src, 'full+cdc')).toMatchObject({ status: 'warn', message: expect.stringMatching(/5 large object\(s\).*at cutover/s) });
      expect(await checkLargeObjects(src, 'full')).toMatchObject({ status: 'pass' });
    } finally {
      await src.end();
    }
  });
});

describe('materialized views', () => {
  const SCHEMA = `
    CREATE TABLE base (id int PRIMARY KEY, n int);
    CREATE MATERIALIZED VIEW fresh AS SELECT id, n * 2 AS n2 FROM base;
    CREATE MATERIALIZED VIEW stale AS SELECT count(*) AS rows, sum(n) AS total FROM base;
    CREATE MATERIALIZED VIEW dice AS SELECT id, random() AS r FROM base;
    CREATE MATERIALIZED VIEW agg_fresh AS SELECT sum(n2) AS total FROM fresh;
    CREATE MATERIALIZED VIEW never AS SELECT id FROM base WITH NO DATA;`;
  const views = ['public.agg_fresh', 'public.dice', 'public.fresh', 'public.never', 'public.stale'].map((identity) => ({ source: identity, target: identity }));
  const TARGET_SCHEMA = `
    CREATE TABLE base (id int PRIMARY KEY, n int);
    CREATE MATERIALIZED VIEW fresh AS SELECT id, n * 2 AS n2 FROM base WITH NO DATA;
    CREATE MATERIALIZED VIEW stale AS SELECT count(*) AS rows, sum(n) AS total FROM base WITH NO DATA;
    CREATE MATERIALIZED VIEW dice AS SELECT id, random() AS r FROM base WITH NO DATA;
    CREATE MATERIALIZED VIEW agg_fresh AS SELECT sum(n2) AS total FROM fresh WITH NO DATA;
    CREATE MATERIALIZED VIEW never AS SELECT id FROM base WITH NO DATA;`;

  beforeAll(async () => {
    await source.sql('CREATE DATABASE mv');
    await source.sql(SCHEMA.replace(';', '; INSERT INTO base SELECT g, g FROM generate_series(1, 100) g;'), 'mv');
    // The source's contents of "stale" are older than its base table.
    await source.sql('UPDATE base SET n = n + 1 WHERE id <= 10; REFRESH MATERIALIZED VIEW fresh; REFRESH MATERIALIZED VIEW agg_fresh', 'mv');
    await target.sql('CREATE DATABASE mv');
    await target.sql(TARGET_SCHEMA, 'mv');
    await target.sql('INSERT INTO base SELECT g, g + CASE WHEN g <= 10 THEN 1 ELSE 0 END FROM generate_series(1, 100) g', 'mv');
  });

  it('are refreshed in dependency order as the source holds them, and compared: stale or volatile contents are named', async () => {
    const [src, tgt] = [await source.connect('mv'), await target.connect('mv')];
    try {
      // agg_fresh reads fresh: fresh is refreshed first.
      expect(await refreshMaterializedViews(src, tgt, views)).toEqual(['public.fresh', 'public.agg_fresh', 'public.dice', 'public.never', 'public.stale']);
    } finally {
      await Promise.all([src.end(), tgt.end()]);
    }
    const results = await compareMaterializedViews(() => source.connect('mv'), () => target.connect('mv'), views, { method: 'checksum', chunkRows: 1000, maxDifferences: 10 });
    const byView = Object.fromEntries(results.map((r) => [r.identity, r.status]));
    expect(byView).toEqual({
      'public.agg_fresh': 'created',
      'public.dice': 'not_migrated',
      'public.fresh': 'created',
      'public.never': 'skipped',
      'public.stale': 'not_migrated',
    });
    expect(results.find((r) => r.identity === 'public.stale')!.detail).toMatch(/differ from the source's.*stale or its query is volatile/);
    // A refresh on the source makes it equal.
    await source.sql('REFRESH MATERIALIZED VIEW stale', 'mv');
    const again = await compareMaterializedViews(() => source.connect('mv'), () => target.connect('mv'), [{ source: 'public.stale', target: 'public.stale' }], { method: 'checksum', chunkRows: 1000, maxDifferences: 10 });
    expect(again[0]!.status).toBe('created');
  });

  it('whose query is volatile are named in precheck with the functions', async () => {
    const src = await source.connect('mv');
    try {
      const check = await checkMaterializedViews(src, parseSpec({ name: 'mv-check', source: { secret: 'env:A' }, target: { secret: 'env:B' } }).objects);
      expect(check).toMatchObject({ status: 'warn', message: expect.stringContaining('public.dice (random())') });
      expect(check.message).not.toContain('public.fresh');
    } finally {
      await src.end();
    }
  });
});

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readReplicationStatus, requestCutover } from '../../engine/control/index.js';
import { buildReport } from '../../engine/report.js';
import { startClusters, type LocalCluster } from '../../local/dev/cluster.js';
import { runLocalWorkflow, type LocalRunResult } from '../../local/runner/index.js';
import { scratchDir } from '../support/clusters.js';
import { waitFor } from '../support/wait.js';

let source: LocalCluster;
let target: LocalCluster;
const scratch = scratchDir('cdc-lo');

beforeAll(async () => {
  [source, target] = await startClusters([{ major: 15, label: 'cdc-lo15' }, { major: 17, label: 'cdc-lo17' }]);
});

afterAll(async () => {
  await Promise.all([source, target].map((c) => c?.stop()));
  scratch.remove();
});

const SCHEMA = `
CREATE TABLE base (id int PRIMARY KEY, n int, doc oid);
INSERT INTO base SELECT g, g, NULL FROM generate_series(1, 200) g;
CREATE MATERIALIZED VIEW totals AS SELECT count(*) AS rows, sum(n) AS total FROM base;
SELECT lo_from_bytea(81001, 'kept as it is');
SELECT lo_from_bytea(81002, 'written while replicating');
SELECT lo_from_bytea(81003, 'unlinked while replicating');
SELECT lo_from_bytea(81004, (SELECT string_agg(decode(md5(g::text), 'hex'), ''::bytea) FROM generate_series(1, 131072) g));
COMMENT ON LARGE OBJECT 81001 IS 'a comment';`;

/** The test's own oracle: every large object's bytes, owner, ACL and comment. */
async function largeObjects(cluster: LocalCluster) {
  const [result] = await cluster.sql(
    `SELECT oid::int8 AS oid, md5(lo_get(oid)) AS md5, pg_get_userbyid(lomowner) AS owner, lomacl::text AS acl, obj_description(oid, 'pg_largeobject') AS comment
       FROM pg_largeobject_metadata ORDER BY oid`,
    'lodb',
  );
  return result!.rows;
}

async function viewContents(cluster: LocalCluster) {
  const [result] = await cluster.sql('SELECT rows::text, total::text FROM totals', 'lodb');
  return result!.rows;
}

describe('a full load with large objects and materialized views', () => {
  it('copies the large objects, and names the materialized view whose source contents are stale without failing the run', async () => {
    await source.sql('CREATE DATABASE lofull');
    await target.sql('CREATE DATABASE lofull');
    await source.sql(SCHEMA + 'CREATE MATERIALIZED VIEW stale AS SELECT count(*) AS rows FROM base; INSERT INTO base VALUES (999, 1, NULL); REFRESH MATERIALIZED VIEW totals;', 'lofull');
    const name = 'full-lobs';
    const result = await runLocalWorkflow({
      name,
      mode: 'full',
      source: { secret: scratch.secretFor(`${name}-source`, source), database: 'lofull' },
      target: { secret: scratch.secretFor(`${name}-target`, target), database: 'lofull' },
    });
    expect(result, JSON.stringify(result)).toMatchObject({ status: 'SUCCEEDED' });
    const oracle = async (cluster: LocalCluster) =>
      (await cluster.sql(`SELECT oid::int8 AS oid, md5(lo_get(oid)) AS md5, obj_description(oid, 'pg_largeobject') AS comment FROM pg_largeobject_metadata ORDER BY oid`, 'lofull'))[0]!.rows;
    expect(await oracle(target)).toEqual(await oracle(source));
    const control = await target.connect('lofull');
    try {
      const report = (await buildReport(control, name))!;
      expect(report.tables.find((t) => t.table === 'pg_catalog.pg_largeobject')).toMatchObject({ rows: 4, compare: 'match' });
      expect(report.notMigrated).toEqual([
        { kind: 'materialized view data', identity: 'public.stale', detail: expect.stringContaining("its contents differ from the source's (1 rows on the source, 1 on the target)") },
      ]);
      expect(report.objects.find((o) => o.kind === 'materialized view data')?.counts).toEqual({ created: 1, not_migrated: 1 });
    } finally {
      await control.end();
    }
  });
});

describe('full+cdc with large objects and materialized views', () => {
  it('ends with the source large objects and materialized view contents on the target after cutover', async () => {
    await source.sql('CREATE DATABASE lodb');
    await target.sql('CREATE DATABASE lodb');
    await source.sql(SCHEMA, 'lodb');
    const name = 'cdc-lobs';
    const spec = {
      name,
      mode: 'full+cdc',
      source: { secret: scratch.secretFor(`${name}-source`, source), database: 'lodb' },
      target: { secret: scratch.secretFor(`${name}-target`, target), database: 'lodb' },
      fullLoad: { parallelism: 2 },
      cdc: { heartbeatTimeoutSeconds: 10 },
    };
    let result: LocalRunResult | undefined;
    const run = runLocalWorkflow(spec).then((r) => (result = r));
    const control = await target.connect('lodb');
    try {
      await waitFor('the streamer to apply', async () => (await readReplicationStatus(control, name))?.streamingSince, 120_000, 100);
      // Large-object changes of every kind, a change to the view's base table and a REFRESH on the source while replicating.
      await source.sql(
        `SELECT lo_put(81002, 8, 'WRITTEN'::bytea); SELECT lo_unlink(81003); SELECT lo_from_bytea(81005, 'created while replicating');
         SELECT lo_put(81004, 1048570, '\\xdeadbeefdeadbeef'::bytea); COMMENT ON LARGE OBJECT 81005 IS 'new';
         UPDATE base SET n = n * 10 WHERE id <= 20; INSERT INTO base VALUES (1000, 5, 81005);
         REFRESH MATERIALIZED VIEW totals;`,
        'lodb',
      );
      const [applied] = await source.sql('SELECT pg_current_wal_lsn()::text AS lsn', 'lodb');
      await waitFor('the target to apply the changes', async () => {
        const [row] = await target.sql('SELECT count(*)::int AS n FROM base WHERE id = 1000', 'lodb');
        return row!.rows[0].n === 1 ? applied : undefined;
      }, 120_000, 100);
      expect(result).toBeUndefined();
      expect(await requestCutover(control, name)).toBe(true);
      await run;
    } finally {
      await control.end();
    }
    expect(result, JSON.stringify(result)).toMatchObject({ status: 'SUCCEEDED' });
    expect(await largeObjects(target)).toEqual(await largeObjects(source));
    expect((await largeObjects(target)).map((r) => r.oid)).toEqual(['81001', '81002', '81004', '81005']);
    expect(await viewContents(target)).toEqual(await viewContents(source));
    expect(await viewContents(target)).toEqual([{ rows: '201', total: String(200 * 201 / 2 + 9 * 210 + 5) }]);

    const [resynced] = await target.sql(
      `SELECT detail FROM pgferry.schema_objects WHERE migration = '${name}' AND kind = 'large objects' AND identity = 'resynced at cutover'`,
      'lodb',
    );
    expect(resynced!.rows[0].detail).toMatch(/1 created \(81005\), 2 copied again \(81002, 81004\), 1 unlinked \(81003\)/);
    const [compared] = await target.sql(
      `SELECT source_table, status, source_rows::int AS objects FROM pgferry.comparisons WHERE migration = '${name}' AND source_schema = 'pg_catalog'`,
      'lodb',
    );
    expect(compared!.rows).toEqual([{ source_table: 'pg_largeobject', status: 'match', objects: 4 }]);
    // The write-unavailable window: from the cutover request (no fence here) until FinishMigration marked the target ready.
    const reportOf = await target.connect('lodb');
    try {
      const { replication, seconds } = (await buildReport(reportOf, name))!;
      expect(replication!.fenced).toBe(false);
      expect(replication!.writeUnavailableSeconds).toBeGreaterThan(0);
      expect(replication!.writeUnavailableSeconds).toBeLessThan(seconds);
    } finally {
      await reportOf.end();
    }
    const [view] = await target.sql(
      `SELECT status, detail FROM pgferry.schema_objects WHERE migration = '${name}' AND kind = 'materialized view data'`,
      'lodb',
    );
    expect(view!.rows).toEqual([{ status: 'created', detail: expect.stringContaining("equal to the source's contents") }]);
  });
});

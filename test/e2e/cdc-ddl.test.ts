/**
 * Schema changes during a live full+cdc migration through the workflow (issue 12, item 5):
 * ADD COLUMN, ALTER TYPE, CREATE INDEX and CREATE TABLE on the source under a pgbench-like
 * load are replicated, the run cuts over identical, and the finish leaves no capture behind.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { listDdlRecords, readReplicationStatus, requestCutover } from '../../engine/control/index.js';
import { startClusters, type LocalCluster } from '../../local/dev/cluster.js';
import { createWorkloadSchema, startWorkload } from '../../local/dev/workload.js';
import { runLocalWorkflow, type LocalRunResult } from '../../local/runner/index.js';
import { scratchDir } from '../support/clusters.js';
import { databaseHashes } from '../support/equality.js';
import { waitFor } from '../support/wait.js';

let source: LocalCluster;
let target: LocalCluster;
const scratch = scratchDir('cdc-ddl');

beforeAll(async () => {
  [source, target] = await startClusters([
    { major: 15, label: 'ddl15' },
    { major: 17, label: 'ddl17' },
  ]);
});

afterAll(async () => {
  await Promise.all([source, target].map((c) => c?.stop()));
  scratch.remove();
});

describe('schema changes during a live migration', () => {
  it('replicates ADD COLUMN, ALTER TYPE, CREATE INDEX and CREATE TABLE made under load, cuts over identical and removes the capture', async () => {
    await source.sql('CREATE DATABASE shop');
    await target.sql('CREATE DATABASE shop');
    const setup = await source.connect('shop');
    await createWorkloadSchema(setup, { scale: 1, accountsPerScale: 5_000 });
    await setup.end();
    const workload = startWorkload(() => source.connect('shop'), { clients: 2, ratePerSecond: 100, seed: 3, scale: 1, accountsPerScale: 5_000 });
    const name = 'cdc-ddl';
    const spec = {
      name,
      mode: 'full+cdc',
      source: { secret: scratch.secretFor(`${name}-source`, source), database: 'shop' },
      target: { secret: scratch.secretFor(`${name}-target`, target), database: 'shop' },
      fullLoad: { parallelism: 2 },
      cdc: { heartbeatTimeoutSeconds: 10 },
      cutover: { fenceSource: true },
    };
    let result: LocalRunResult | undefined;
    const run = runLocalWorkflow(spec).then((r) => (result = r));
    const control = await target.connect('shop');
    try {
      await waitFor('the streamer to apply', async () => (await readReplicationStatus(control, name))?.streamingSince, 120_000, 100);
      const changes = [
        "ALTER TABLE pgbench_accounts ADD COLUMN note text DEFAULT 'new'",
        'ALTER TABLE pgbench_history ALTER COLUMN delta TYPE bigint',
        'CREATE INDEX history_mtime ON pgbench_history (mtime)',
        "BEGIN; CREATE TABLE audit (id bigserial PRIMARY KEY, at timestamptz NOT NULL DEFAULT now(), what text); INSERT INTO audit (what) SELECT 'first ' || g FROM generate_series(1, 100) g; COMMIT",
        "INSERT INTO audit (what) SELECT 'later ' || g FROM generate_series(1, 100) g",
        "UPDATE pgbench_accounts SET note = 'set' WHERE aid % 7 = 0",
      ];
      for (const sql of changes) {
        await source.sql(sql, 'shop');
        const before = (await readReplicationStatus(control, name))!.rowsApplied;
        // Load between the changes: each one meets rows of the workload in the stream.
        await waitFor('the load to be applied', async () => (await readReplicationStatus(control, name))!.rowsApplied > before + 20, 60_000, 100);
      }
      expect(result).toBeUndefined();
      expect(await requestCutover(control, name)).toBe(true);
      await run;
      expect((await listDdlRecords(control, name)).map((d) => d.status)).toEqual(['applied', 'applied', 'applied', 'applied']);
    } finally {
      await control.end();
      await workload.stop();
    }
    expect(result, JSON.stringify(result)).toMatchObject({ status: 'SUCCEEDED' });
    expect(await databaseHashes(target, 'shop')).toEqual(await databaseHashes(source, 'shop'));
    const [audit] = await target.sql('SELECT count(*)::int AS n FROM audit', 'shop');
    expect(audit!.rows[0].n).toBe(200);
    const [left] = await source.sql(
      `SELECT (SELECT count(*)::int FROM pg_event_trigger) AS triggers, (SELECT count(*)::int FROM pg_namespace WHERE nspname = 'pgferry_capture') AS schemas`,
      'shop',
    );
    expect(left!.rows[0]).toEqual({ triggers: 0, schemas: 0 });
  });
});

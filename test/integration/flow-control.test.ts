/**
 * Flow control (issue 15, item 3) on real clusters: a throttled full load still copies every
 * row, each copy worker applying its share among the workers running; the share follows the
 * workers that register and leave; pgferry throttle changes the limits of a running load and of
 * the CDC applier, and status shows them. No timings are asserted: what the workers applied is
 * read from the control schema.
 */
import type pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { listTables } from '../../engine/catalog/tables.js';
import { beginMigration, ensureControlSchema, setPhase } from '../../engine/control/index.js';
import { FlowControl } from '../../engine/flow/flow-control.js';
import { requestMigrationThrottle } from '../../engine/flow/throttle.js';
import { planUnits, savePlan, targetFacts, targetOf } from '../../engine/load/planner.js';
import { runCopyWorker } from '../../engine/load/worker.js';
import { exportSnapshot } from '../../engine/snapshot.js';
import { parseSpec } from '../../engine/spec/index.js';
import { readMigrationStatus } from '../../engine/status.js';
import { formatStatus } from '../../bin/format.js';
import { startClusters, type LocalCluster } from '../../local/dev/cluster.js';
import { tableHashes } from '../support/equality.js';
import { startTrackedReplicator } from '../support/tracked-replicator.js';
import { waitFor } from '../support/wait.js';
import { runCli } from '../support/cli.js';
import { scratchDir } from '../support/clusters.js';

let source: LocalCluster;
let target: LocalCluster;

const DDL = 'CREATE TABLE items (id int PRIMARY KEY, name text NOT NULL, price numeric)';
const ROWS = 6000;

const specFor = (name: string, fullLoad: object = {}) =>
  parseSpec({
    name,
    mode: 'full',
    source: { secret: 'env:UNUSED_SOURCE' },
    target: { secret: 'env:UNUSED_TARGET' },
    fullLoad: { splitTablesLargerThan: '64kB', parallelism: 2, ...fullLoad },
  });

interface WorkerRow {
  worker: string;
  kind: string;
  workers: number;
  rows_per_second: number | null;
  bytes_per_second: number | null;
  stopped: boolean;
}

const workerRows = async (client: pg.Client, migration: string, kind = 'load') =>
  (
    await client.query<WorkerRow>(
      'SELECT worker, kind, workers, rows_per_second, bytes_per_second, stopped_at IS NOT NULL AS stopped FROM pgferry.flow_workers WHERE migration = $1 AND kind = $2 ORDER BY started_at, worker',
      [migration, kind],
    )
  ).rows;

beforeAll(async () => {
  [source, target] = await startClusters([{ major: 15, label: 'flow-source' }, { major: 17, label: 'flow-target' }]);
  await source.sql('CREATE DATABASE app');
  await source.sql(`${DDL}; INSERT INTO items SELECT g, 'item ' || g, g / 7.0 FROM generate_series(1, ${ROWS}) g; ANALYZE`, 'app');
});

afterAll(async () => {
  await Promise.all([source, target].map((c) => c?.stop()));
});

/** A target database with the table, the control schema, the migration registered and its units planned. */
async function prepareLoad(db: string, spec: ReturnType<typeof specFor>) {
  await target.sql(`CREATE DATABASE ${db}`);
  await target.sql(DDL, db);
  const [src, tgt] = [await source.connect('app'), await target.connect(db)];
  await ensureControlSchema(tgt);
  await beginMigration(tgt, spec.name, spec);
  const tables = await listTables(src, spec.objects);
  const units = planUnits({ tables, target: await targetFacts(tgt, tables.map(targetOf)), spec, sourceVersionNum: 150000 });
  await savePlan(tgt, spec.name, tables, units);
  await src.end();
  return { tgt, units };
}

function copyWorker(db: string, spec: ReturnType<typeof specFor>, snapshot: string) {
  return runCopyWorker({
    migration: spec.name,
    snapshot,
    maxAttempts: 1,
    flow: { rowsPerSecond: spec.fullLoad.maxRowsPerSecond, bytesPerSecond: spec.fullLoad.maxBytesPerSecond },
    connectSource: () => source.connect('app'),
    connectTarget: () => target.connect(db),
  });
}

/** The items of the source database `sourceDb` (default app) and of the target database `db` are identical. */
async function expectSameItems(db: string, sourceDb = 'app'): Promise<void> {
  const [src, dst] = [await source.connect(sourceDb), await target.connect(db)];
  try {
    expect(await tableHashes(dst)).toEqual(await tableHashes(src));
  } finally {
    await Promise.all([src.end(), dst.end()]);
  }
}

describe('flow control of the full load', () => {
  let holder: pg.Client;
  let snapshot: string;

  beforeAll(async () => {
    holder = await source.connect('app');
    snapshot = await exportSnapshot(holder);
  });

  afterAll(async () => {
    await holder.query('COMMIT');
    await holder.end();
  });

  it('copies every row under a small row limit, each worker applying its share among the workers running', async () => {
    const spec = specFor('flow-load', { maxRowsPerSecond: 4000 });
    const { tgt, units } = await prepareLoad('flow_load', spec);
    expect(units.length).toBeGreaterThan(2);
    const summaries = await Promise.all([copyWorker('flow_load', spec, snapshot), copyWorker('flow_load', spec, snapshot)]);
    expect(summaries.reduce((rows, s) => rows + s.rows, 0)).toBe(ROWS);
    await expectSameItems('flow_load');

    const rows = await workerRows(tgt, 'flow-load');
    expect(rows).toHaveLength(2);
    // Each worker's last share is the limit divided by the workers it saw running (1 or 2).
    for (const row of rows) {
      expect(row.stopped).toBe(true);
      expect([1, 2]).toContain(row.workers);
      expect(row.rows_per_second! * row.workers).toBe(4000);
      expect(row.bytes_per_second).toBeNull();
    }
    await tgt.end();
  });

  it('applies a limit changed by pgferry throttle while the load runs, and status shows it', async () => {
    const spec = specFor('flow-throttle', { maxRowsPerSecond: 300, parallelism: 1 });
    const { tgt } = await prepareLoad('flow_throttle', spec);
    const running = copyWorker('flow_throttle', spec, snapshot);
    const [worker] = await waitFor('the copy worker to apply the spec limit', async () => {
      const rows = await workerRows(tgt, 'flow-throttle');
      return rows.length === 1 && rows[0]!.rows_per_second === 300 && rows;
    });
    const status = await readMigrationStatus(tgt, 'flow-throttle');
    expect(status?.flow?.load).toMatchObject({ limits: { rowsPerSecond: 300 }, throttled: false, workers: 1 });

    const result = await requestMigrationThrottle(tgt, spec, { phases: ['load'], rowsPerSecond: 1_000_000 });
    expect(result).toMatchObject({ applied: true, message: expect.stringContaining('full load 1,000,000 rows/s (set by pgferry throttle); CDC no limit') });
    // The worker picks it up at its next beat: its row shows the new share.
    await waitFor('the copy worker to apply the throttled limit', async () => (await workerRows(tgt, 'flow-throttle'))[0]?.rows_per_second === 1_000_000);
    expect((await running).rows).toBe(ROWS);
    await expectSameItems('flow_throttle');

    const after = (await readMigrationStatus(tgt, 'flow-throttle'))!;
    expect(after.flow?.load).toMatchObject({ limits: { rowsPerSecond: 1_000_000 }, throttled: true });
    expect(formatStatus(after)).toContain('flow control: full load 1,000,000 rows/s (set by pgferry throttle); CDC no limit');
    expect((await workerRows(tgt, 'flow-throttle'))[0]).toMatchObject({ worker: worker!.worker, stopped: true });

    // Back to the spec's limit, then lifted altogether.
    await requestMigrationThrottle(tgt, spec, { phases: ['load'], rowsPerSecond: null });
    expect((await readMigrationStatus(tgt, 'flow-throttle'))!.flow?.load).toMatchObject({ limits: { rowsPerSecond: 300 }, throttled: false });
    await requestMigrationThrottle(tgt, spec, { rowsPerSecond: 0, bytesPerSecond: 0 });
    expect((await readMigrationStatus(tgt, 'flow-throttle'))!.flow?.load).toMatchObject({ limits: {}, throttled: true });
    await tgt.end();
  });
});

describe('the share of each worker', () => {
  it('is the limit divided by the workers of its kind registered and beating: two get half each, one alone all of it', async () => {
    const spec = specFor('flow-share');
    await target.sql('CREATE DATABASE flow_share');
    const sessions = await Promise.all([1, 2, 3, 4].map(() => target.connect('flow_share')));
    const [admin, a, b, c] = sessions as [pg.Client, pg.Client, pg.Client, pg.Client];
    await ensureControlSchema(admin);
    await beginMigration(admin, spec.name, spec);
    const limits = { rowsPerSecond: 1000, bytesPerSecond: 1 << 20 };
    // Beats only when asked (refresh), so the test decides when each worker looks.
    const start = (control: pg.Client, kind: 'load' | 'cdc') => FlowControl.start({ migration: spec.name, kind, limits, control, refreshMs: 3_600_000 });
    const first = await start(a, 'load');
    expect(first.limits).toEqual(limits);
    const second = await start(b, 'load');
    await first.refresh();
    expect([first.limits, second.limits]).toEqual([
      { rowsPerSecond: 500, bytesPerSecond: 1 << 19 },
      { rowsPerSecond: 500, bytesPerSecond: 1 << 19 },
    ]);
    expect((await workerRows(admin, spec.name)).map((row) => [row.workers, row.rows_per_second])).toEqual([
      [2, 500],
      [2, 500],
    ]);

    // The CDC applier shares the CDC limits, not the load's; a worker silent past 5 s no longer counts.
    const applier = await start(c, 'cdc');
    await admin.query(
      "INSERT INTO pgferry.flow_workers (migration, worker, kind, heartbeat_at) VALUES ($1, 'gone', 'load', now() - interval '1 minute')",
      [spec.name],
    );
    await first.refresh();
    expect([first.workers, applier.workers]).toEqual([2, 1]);

    // pgferry throttle: every worker applies its share of the new limit at its next beat.
    await requestMigrationThrottle(admin, spec, { phases: ['load'], rowsPerSecond: 4000 });
    await Promise.all([first.refresh(), second.refresh(), applier.refresh()]);
    expect([first.limits.rowsPerSecond, second.limits.rowsPerSecond, applier.limits.rowsPerSecond]).toEqual([2000, 2000, 1000]);

    // A worker that ends leaves the whole limit to the other.
    await second.stop();
    await first.refresh();
    expect(first.limits).toEqual({ rowsPerSecond: 4000, bytesPerSecond: 1 << 20 });
    const status = (await readMigrationStatus(admin, spec.name))!;
    expect(status.flow?.load).toMatchObject({ workers: 1, share: { rowsPerSecond: 4000 } });
    await Promise.all([first.stop(), applier.stop()]);
    await Promise.all(sessions.map((session) => session.end()));
  });

  it('refuses pgferry throttle of a run that never started or has ended, saying so', async () => {
    const tgt = await target.connect('flow_share');
    expect(await requestMigrationThrottle(tgt, specFor('never-ran'), { rowsPerSecond: 10 })).toMatchObject({
      applied: false,
      reason: expect.stringContaining('Migration never-ran has not started on this target: there is nothing to throttle'),
    });
    await setPhase(tgt, 'flow-share', 'done');
    expect(await requestMigrationThrottle(tgt, specFor('flow-share'), { rowsPerSecond: 10 })).toMatchObject({
      applied: false,
      reason: 'Migration flow-share has ended (phase: done): there is nothing to throttle.',
    });
    await tgt.end();
  });
});

describe('pgferry throttle and pgferry status of a spec file', () => {
  it("reach the run through the spec's target: change, show and lift the limits", async () => {
    const scratch = scratchDir('flow-cli');
    try {
      await target.sql('CREATE DATABASE flow_cli');
      const spec = specFor('flow-cli');
      const tgt = await target.connect('flow_cli');
      await ensureControlSchema(tgt);
      await beginMigration(tgt, spec.name, spec);
      await tgt.end();
      const file = scratch.writeJson('flow-cli.json', {
        name: 'flow-cli',
        source: { secret: scratch.secretFor('source', source, { dbname: 'app' }) },
        target: { secret: scratch.secretFor('target', target, { dbname: 'flow_cli' }) },
      });

      const changed = await runCli('throttle', file, '--phase', 'cdc', '--bytes', '1MB', '--rows', '500');
      expect(changed).toMatchObject({ code: 0, stdout: expect.stringContaining('Flow control of flow-cli: full load no limit; CDC 500 rows/s, 1.0 MB/s (set by pgferry throttle).') });
      expect((await runCli('status', file)).stdout).toContain('flow control: full load no limit; CDC 500 rows/s, 1.0 MB/s (set by pgferry throttle)');
      expect((await runCli('throttle', file)).stdout).toContain('Limits in force for flow-cli: full load no limit; CDC 500 rows/s, 1.0 MB/s (set by pgferry throttle).');
      expect((await runCli('throttle', file, '--off')).stdout).toContain('Flow control of flow-cli: full load no limit (set by pgferry throttle); CDC no limit (set by pgferry throttle).');
      expect(await runCli('throttle', file, '--rows', '-3')).toMatchObject({ code: 2 });
    } finally {
      scratch.remove();
    }
  });
});

describe('flow control of the CDC applier', () => {
  it('holds the applier to cdc.maxRowsPerSecond until pgferry throttle lifts it, and every change arrives', async () => {
    await source.sql('CREATE DATABASE cdc_flow');
    await target.sql('CREATE DATABASE cdc_flow');
    await source.sql(DDL, 'cdc_flow');
    await target.sql(DDL, 'cdc_flow');
    const logs: string[] = [];
    const run = await startTrackedReplicator({
      source,
      target,
      database: 'cdc_flow',
      migration: 'flow-cdc',
      slot: 'flow_cdc',
      tables: ['items'],
      maxDelayMs: 50,
      logs,
      flow: { rowsPerSecond: 20 },
    });
    try {
      await run.src.query("INSERT INTO items SELECT g, 'item ' || g, g FROM generate_series(1, 300) g");
      await run.src.query('UPDATE items SET price = price + 1 WHERE id <= 100');
      const [applier] = await waitFor('the applier to register with its limit', async () => {
        const rows = await workerRows(run.control, 'flow-cdc', 'cdc');
        return rows.length === 1 && rows;
      });
      expect(applier).toMatchObject({ workers: 1, rows_per_second: 20, stopped: false });

      const spec = specFor('flow-cdc');
      const result = await requestMigrationThrottle(run.control, spec, { phases: ['cdc'], rowsPerSecond: 0 });
      expect(result).toMatchObject({ applied: true, message: expect.stringContaining('CDC no limit (set by pgferry throttle)') });
      await waitFor('the applier to lift its limit', async () => (await workerRows(run.control, 'flow-cdc', 'cdc'))[0]?.rows_per_second === null);
      await waitFor('every change applied', async () => {
        const { rows } = await run.control.query<{ n: number; updated: number }>('SELECT count(*)::int AS n, count(*) FILTER (WHERE price = id + 1)::int AS updated FROM items');
        return rows[0]!.n === 300 && rows[0]!.updated === 100;
      });
      await expectSameItems('cdc_flow', 'cdc_flow');
      expect(formatStatus((await readMigrationStatus(run.control, 'flow-cdc'))!)).toContain('CDC no limit (set by pgferry throttle)');
    } finally {
      await run.stop();
    }
    expect(await run.run).toBe('stopped');
    expect((await workerRowsIn('cdc_flow', 'flow-cdc'))[0]).toMatchObject({ stopped: true });
  });
});

async function workerRowsIn(db: string, migration: string): Promise<WorkerRow[]> {
  const client = await target.connect(db);
  try {
    return await workerRows(client, migration, 'cdc');
  } finally {
    await client.end();
  }
}

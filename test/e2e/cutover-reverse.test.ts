/**
 * After cutover, through the workflow and the CLI: reverse replication armed at cutover carries
 * the writes the target takes back to the source; `pgferry fallback` returns to the source with
 * nothing lost (source equal to target and writable, target fenced, sequences set back, the
 * application's secret pointed back); `pgferry finish` leaves no slot, publication, fence or
 * control schema on either side; and a fallback without cutover.reverse says how to arm it.
 */
import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { migrationState, readAfterCutover, readReplicationStatus } from '../../engine/control/index.js';
import { buildReport } from '../../engine/report.js';
import { startClusters, type LocalCluster } from '../../local/dev/cluster.js';
import { runLocalWorkflow, type LocalRunResult } from '../../local/runner/index.js';
import { createWorkloadSchema, startWorkload } from '../../local/dev/workload.js';
import { runCli } from '../support/cli.js';
import { scratchDir } from '../support/clusters.js';
import { databaseHashes } from '../support/equality.js';
import { waitFor as waitUntil } from '../support/wait.js';

let source: LocalCluster;
let target: LocalCluster;
const scratch = scratchDir('reverse');
const ACCOUNTS = 5_000;

beforeAll(async () => {
  [source, target] = await startClusters([
    { major: 15, label: 'rev15' },
    { major: 17, label: 'rev17' },
  ]);
});

afterAll(async () => {
  await Promise.all([source, target].map((c) => c?.stop()));
  scratch.remove();
});

const waitFor = <T>(what: string, probe: () => Promise<T | undefined | false | null>) => waitUntil(what, probe, 120_000, 100);

async function createDatabase(database: string) {
  await source.sql(`CREATE DATABASE ${database}`);
  await target.sql(`CREATE DATABASE ${database}`);
  const setup = await source.connect(database);
  await createWorkloadSchema(setup, { scale: 1, accountsPerScale: ACCOUNTS });
  await setup.end();
}

async function expectSameData(database: string) {
  const sourceHashes = await databaseHashes(source, database);
  expect(Object.keys(sourceHashes).length).toBeGreaterThan(0);
  expect(await databaseHashes(target, database)).toEqual(sourceHashes);
}

/** A write in a new session, as an application would make it after the fence: the SQLSTATE it fails with, or 'ok'. */
async function tryWrite(cluster: LocalCluster, database: string): Promise<string> {
  const client = await cluster.connect(database);
  try {
    await client.query('BEGIN READ WRITE');
    await client.query('UPDATE public.pgbench_branches SET bbalance = bbalance WHERE bid = 1');
    await client.query('COMMIT');
    return 'ok';
  } catch (error) {
    return (error as { code?: string }).code ?? String(error);
  } finally {
    await client.end().catch(() => undefined);
  }
}

/** What pgferry leaves on a server: slots, publications, fence triggers, database settings and the control schema. */
async function leftovers(cluster: LocalCluster, database: string) {
  const [rows] = await cluster.sql(
    `SELECT (SELECT count(*)::int FROM pg_replication_slots WHERE slot_name LIKE 'pgferry%') AS slots,
            (SELECT count(*)::int FROM pg_publication WHERE pubname LIKE 'pgferry%') AS publications,
            (SELECT count(*)::int FROM pg_trigger WHERE tgname LIKE 'pgferry%') AS triggers,
            (SELECT count(*)::int FROM pg_db_role_setting s JOIN pg_database d ON d.oid = s.setdatabase WHERE d.datname = current_database()) AS settings,
            (SELECT count(*)::int FROM pg_namespace WHERE nspname LIKE 'pgferry%') AS schemas,
            (SELECT count(*)::int FROM pg_replication_origin WHERE roname LIKE 'pgferry%') AS origins`,
    database,
  );
  return rows!.rows[0] as Record<string, number>;
}

async function sequenceValues(cluster: LocalCluster, database: string): Promise<Record<string, string>> {
  const [rows] = await cluster.sql(`SELECT schemaname || '.' || sequencename AS name, last_value::text AS value FROM pg_sequences WHERE schemaname NOT LIKE 'pgferry%' ORDER BY 1`, database);
  return Object.fromEntries(rows!.rows.map((r: { name: string; value: string }) => [r.name, r.value]));
}

describe('after cutover', () => {
  it('carries the target’s writes back to the source, falls back with nothing lost, and finish leaves nothing behind', async () => {
    const database = 'orders';
    await createDatabase(database);
    const name = 'reverse-orders';
    const appSecret = scratch.writeJson('app.json', { host: 'old-host', port: 1, dbname: 'old', username: 'app', password: 'app-password' });
    const spec = {
      name,
      mode: 'full+cdc',
      source: { secret: scratch.secretFor(`${name}-source`, source), database },
      target: { secret: scratch.secretFor(`${name}-target`, target), database },
      fullLoad: { parallelism: 2 },
      cdc: { heartbeatTimeoutSeconds: 10 },
      cutover: { fenceSource: true, reverse: true, maxLagSeconds: 5, switch: { secret: `file:${appSecret}` } },
    };
    const specFile = scratch.writeJson(`${name}.json`, spec);
    const workload = startWorkload(() => source.connect(database), { clients: 2, ratePerSecond: 80, seed: 3, scale: 1, accountsPerScale: ACCOUNTS });

    let result: LocalRunResult | undefined;
    const run = runLocalWorkflow(spec).then((r) => (result = r));
    const control = await target.connect(database);
    control.on('error', () => undefined);
    try {
      await waitFor('the streamer to apply', async () => (await readReplicationStatus(control, name))?.streamingSince);
      expect((await runCli('cutover', specFile)).code).toBe(0);
      await waitFor('the Reverse phase', async () => (await migrationState(control, name))?.phase === 'reverse');
      // The fence ended the load on the source, and holds for new sessions.
      expect((await workload.finished).stoppedBecause).toBeDefined();
      expect(await tryWrite(source, database)).toBe('25006');
      await expectSameData(database);
      expect(JSON.parse(readFileSync(appSecret, 'utf8'))).toMatchObject({ host: target.connection.host, port: target.connection.port, dbname: database, password: 'app-password' });

      // The application now writes to the target; the reverse stream carries it to the source.
      const onTarget = await startWorkload(() => target.connect(database), { clients: 2, seed: 11, scale: 1, accountsPerScale: ACCOUNTS, maxTransactions: 400 }).finished;
      expect(onTarget.transactions).toBe(400);
      await waitFor('the reverse stream to apply the target’s writes', async () => ((await readAfterCutover(control, name))?.reverse.rowsApplied ?? 0) > 0);
      expect((await runCli('status', specFile)).stdout).toMatch(/Reverse \(target → source\): lag/);

      const fallback = await runCli('fallback', specFile);
      expect(fallback.stderr).toBe('');
      expect(fallback.stdout).toMatch(/Fell back to the source: writes were unavailable for \d+\.\d+ s/);
      await run;
      expect(result, JSON.stringify(result)).toMatchObject({ status: 'SUCCEEDED' });

      await expectSameData(database);
      expect(await sequenceValues(source, database)).toEqual(await sequenceValues(target, database));
      expect(await tryWrite(source, database)).toBe('ok');
      expect(await tryWrite(target, database)).toBe('25006');
      expect(JSON.parse(readFileSync(appSecret, 'utf8'))).toMatchObject({ host: source.connection.host, port: source.connection.port, dbname: database });
      // The target's fence ended every other session on it, this one too.
      const report = await target.connect(database).then((after) => buildReport(after, name).finally(() => after.end()));
      expect(report?.afterCutover).toMatchObject({ reverseArmed: true, outcome: 'fallen-back' });
      expect(report?.afterCutover?.fallbackWriteUnavailableSeconds).toBeGreaterThan(0);
      expect(report?.checklist.join('\n')).toMatch(/Fell back/);
      expect(await leftovers(target, database)).toMatchObject({ slots: 0, publications: 0 });
    } finally {
      await control.end();
    }

    const finish = await runCli('finish', specFile, '--drop-control');
    expect(finish.stderr).toBe('');
    expect(finish.code).toBe(0);
    for (const side of [source, target]) expect(await leftovers(side, database)).toEqual({ slots: 0, publications: 0, triggers: 0, settings: 0, schemas: 0, origins: 0 });
  });

  it('refuses a fallback without cutover.reverse, saying how to arm it; finish lifts the fence of a plain cutover', async () => {
    const database = 'plain';
    await createDatabase(database);
    const name = 'plain-cutover';
    const spec = {
      name,
      mode: 'full+cdc',
      source: { secret: scratch.secretFor(`${name}-source`, source), database },
      target: { secret: scratch.secretFor(`${name}-target`, target), database },
      cutover: { mode: 'auto', fenceSource: true },
    };
    const specFile = scratch.writeJson(`${name}.json`, spec);
    const result = await runLocalWorkflow(spec);
    expect(result, JSON.stringify(result)).toMatchObject({ status: 'SUCCEEDED' });
    expect(await tryWrite(source, database)).toBe('25006');

    const fallback = await runCli('fallback', specFile);
    expect(fallback.code).toBe(1);
    expect(fallback.stderr).toMatch(/without reverse replication \(cutover\.reverse\).*"reverse": true/s);

    const finish = await runCli('finish', specFile);
    expect(finish.code).toBe(0);
    expect(finish.stdout).toMatch(/the control schema stays/);
    expect(await tryWrite(source, database)).toBe('ok');
    expect(await leftovers(source, database)).toMatchObject({ slots: 0, publications: 0, triggers: 0, settings: 0 });
    const control = await target.connect(database);
    try {
      const report = await buildReport(control, name);
      expect(report?.checklist.join('\n')).toMatch(/Sequences: .*\n.*Ownership/s);
    } finally {
      await control.end();
    }
  });
});

/**
 * A live CDC migration through the local runner meets the everyday events of a long run: the
 * target out of reach for 90 s (a failover, a restart) with a 2-minute retry window, and the
 * passwords of both sides rotated with every pgferry session ended. The run goes on, cuts over,
 * and the target equals the source.
 */
import { randomBytes } from 'node:crypto';
import type pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readReplicationStatus, requestCutover } from '../../engine/control/index.js';
import { startClusters, type LocalCluster } from '../../local/dev/cluster.js';
import { createWorkloadSchema, startWorkload, type RunningWorkload } from '../../local/dev/workload.js';
import { runLocalWorkflow, type LocalRunResult } from '../../local/runner/index.js';
import { scratchDir } from '../support/clusters.js';
import { databaseHashes } from '../support/equality.js';
import { OutageProxy } from '../support/outage-proxy.js';
import { sleep, waitFor as waitUntil } from '../support/wait.js';

let source: LocalCluster;
let target: LocalCluster;
const scratch = scratchDir('outage');
const ACCOUNTS = 5_000;

beforeAll(async () => {
  [source, target] = await startClusters([
    { major: 15, label: 'outage-src' },
    { major: 17, label: 'outage-tgt' },
  ]);
});

afterAll(async () => {
  await Promise.all([source, target].map((c) => c?.stop()));
  scratch.remove();
});

const waitFor = <T>(what: string, probe: () => Promise<T | undefined | false | null>) => waitUntil(what, probe, 120_000, 200);

async function bankDatabase(database: string): Promise<RunningWorkload> {
  await source.sql(`CREATE DATABASE ${database}`);
  await target.sql(`CREATE DATABASE ${database}`);
  const setup = await source.connect(database);
  await createWorkloadSchema(setup, { scale: 1, accountsPerScale: ACCOUNTS });
  await setup.end();
  return startWorkload(() => source.connect(database), { clients: 2, ratePerSecond: 50, seed: 12, scale: 1, accountsPerScale: ACCOUNTS });
}

async function expectSameData(database: string) {
  const sourceHashes = await databaseHashes(source, database);
  expect(Object.keys(sourceHashes).length).toBeGreaterThan(0);
  expect(await databaseHashes(target, database)).toEqual(sourceHashes);
}

/** The streamer has applied more than `after` rows, with a heartbeat newer than `since`. */
function appliedPast(control: pg.Client, name: string, after: number, since = 0) {
  return waitFor(`the streamer to apply more than ${after} rows`, async () => {
    const status = await readReplicationStatus(control, name);
    const fresh = status?.heartbeatAgeSeconds !== null && status?.heartbeatAgeSeconds !== undefined && Date.now() - status.heartbeatAgeSeconds * 1000 > since;
    return status?.streamingSince && fresh && status.rowsApplied > after ? status : undefined;
  });
}

/** Cuts over (the fence stops the workload), waits for the run, and checks the outcome a user cares about. */
async function cutOver(control: pg.Client, name: string, database: string, run: Promise<LocalRunResult>, workload: RunningWorkload) {
  expect(await requestCutover(control, name)).toBe(true);
  const result = await run;
  const stats = await Promise.race([workload.finished, sleep(30_000).then(() => workload.stop())]);
  expect(result, JSON.stringify(result)).toMatchObject({ status: 'SUCCEEDED' });
  expect(stats.transactions).toBeGreaterThan(0);
  await expectSameData(database);
  const [slots] = await source.sql("SELECT count(*)::int AS n FROM pg_replication_slots WHERE slot_name LIKE 'pgferry%'");
  expect(slots!.rows[0].n).toBe(0);
}

describe('a live migration', () => {
  it('waits out a target that is out of reach for 90 s within a 2-minute retry window, then cuts over identical', { timeout: 600_000 }, async () => {
    const workload = await bankDatabase('outage');
    const proxy = await OutageProxy.start(target.connection);
    const name = 'outage-target';
    const retried: string[] = [];
    const spec = {
      name,
      mode: 'full+cdc',
      source: { secret: scratch.secretFor(`${name}-source`, source), database: 'outage' },
      // pgferry reaches the target only through the proxy; the test's own sessions go straight to it.
      target: { secret: scratch.secretFor(`${name}-target`, target, { port: proxy.port }), database: 'outage' },
      fullLoad: { parallelism: 2 },
      cdc: { retryWindowMinutes: 2 },
      compare: { enabled: false },
      cutover: { mode: 'manual', fenceSource: true, maxLagSeconds: 5 },
    };
    let result: LocalRunResult | undefined;
    const run = runLocalWorkflow(spec, { onEvent: (event) => event.type === 'StateRetried' && retried.push(event.state.name) }).then((r) => (result = r));
    const control = await target.connect('outage');
    try {
      await appliedPast(control, name, 0);
      await proxy.cut();
      const writtenBefore = workload.stats().transactions;
      await sleep(90_000);
      // Rows were written on the source all the while, and the run is still going.
      expect(workload.stats().transactions).toBeGreaterThan(writtenBefore);
      expect(result, JSON.stringify(result)).toBeUndefined();
      await proxy.restore();
      // Nothing reached the target while it was cut off: what is applied from now on comes after the outage.
      const atRestore = (await readReplicationStatus(control, name))!;
      await appliedPast(control, name, atRestore.rowsApplied, Date.now());
      // The status step found the target out of reach, and the workflow tried it again.
      expect(retried).toContain('ReplicationStatus');
      await cutOver(control, name, 'outage', run, workload);
    } finally {
      await control.end();
      await proxy.stop();
      await workload.stop();
    }
  });

  it('a full load waits out a target that is out of reach for 90 s: the snapshot is held on, the copy worker runs again', { timeout: 600_000 }, async () => {
    const database = 'fullout';
    await source.sql(`CREATE DATABASE ${database}`);
    await target.sql(`CREATE DATABASE ${database}`);
    await source.sql("CREATE TABLE items (id int PRIMARY KEY, label text NOT NULL); INSERT INTO items SELECT g, 'item ' || g FROM generate_series(1, 12000) g", database);
    const proxy = await OutageProxy.start(target.connection);
    const name = 'outage-load';
    const spec = {
      name,
      mode: 'full',
      source: { secret: scratch.secretFor(`${name}-source`, source), database },
      target: { secret: scratch.secretFor(`${name}-target`, target, { port: proxy.port }), database },
      // Slow enough that the outage comes in the middle of the copy.
      fullLoad: { parallelism: 1, maxBytesPerSecond: 4096 },
      cdc: { retryWindowMinutes: 2 },
    };
    let result: LocalRunResult | undefined;
    const run = runLocalWorkflow(spec).then((r) => (result = r));
    try {
      await waitFor('the copy to be under way', async () => {
        const [rows] = await target.sql('SELECT count(*)::int AS n FROM pgferry.unit_progress WHERE rows_copied > 0', database).catch(() => [{ rows: [{ n: 0 }] }]);
        return rows!.rows[0]!.n > 0;
      });
      await proxy.cut();
      await sleep(90_000);
      expect(result, JSON.stringify(result)).toBeUndefined();
      await proxy.restore();
      await run;
    } finally {
      await proxy.stop();
    }
    expect(result, JSON.stringify(result)).toMatchObject({ status: 'SUCCEEDED' });
    await expectSameData(database);
  });

  it('survives the rotation of both passwords with every pgferry session ended, then cuts over identical', { timeout: 600_000 }, async () => {
    const workload = await bankDatabase('rotation');
    const name = 'rotation';
    const password = () => `pw-${randomBytes(12).toString('hex')}`;
    const first = password();
    for (const cluster of [source, target]) await cluster.sql(`CREATE ROLE ferry LOGIN SUPERUSER PASSWORD '${first}'`);
    const secrets = (pw: string) => ({
      source: scratch.secretFor(`${name}-source`, source, { username: 'ferry', password: pw }),
      target: scratch.secretFor(`${name}-target`, target, { username: 'ferry', password: pw }),
    });
    const refs = secrets(first);
    const spec = {
      name,
      mode: 'full+cdc',
      source: { secret: refs.source, database: 'rotation' },
      target: { secret: refs.target, database: 'rotation' },
      fullLoad: { parallelism: 2 },
      compare: { enabled: false },
      cutover: { mode: 'manual', fenceSource: true, maxLagSeconds: 5 },
    };
    let result: LocalRunResult | undefined;
    const run = runLocalWorkflow(spec).then((r) => (result = r));
    const control = await target.connect('rotation');
    try {
      await appliedPast(control, name, 0);
      // As a rotation does: the new password is set on the server and written to the secret the run reads.
      const second = password();
      for (const cluster of [source, target]) await cluster.sql(`ALTER ROLE ferry PASSWORD '${second}'`);
      secrets(second);
      for (const cluster of [source, target]) {
        await cluster.sql("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = 'ferry' AND pid <> pg_backend_pid()");
      }
      await waitFor('the streamer to stream again, logged in with the new password', async () => {
        const [walsenders] = await source.sql("SELECT count(*)::int AS n FROM pg_stat_activity WHERE usename = 'ferry' AND backend_type = 'walsender'");
        return walsenders!.rows[0].n > 0;
      });
      const streamingAgain = (await readReplicationStatus(control, name))!;
      await appliedPast(control, name, streamingAgain.rowsApplied, Date.now());
      expect(result, JSON.stringify(result)).toBeUndefined();
      await cutOver(control, name, 'rotation', run, workload);
    } finally {
      await control.end();
      await workload.stop();
    }
  });
});

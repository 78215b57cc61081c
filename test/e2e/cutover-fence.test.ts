/**
 * A full+cdc migration with cutover.fenceSource under a live write load, through the workflow:
 * after the fence a new session's BEGIN READ WRITE write is refused, the target equals the source
 * after cutover, no slot is left, and a write that passes the fence (session_replication_role =
 * replica) is applied and reported, not lost.
 */
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readLateChanges, readReplicationStatus, requestCutover } from '../../engine/control/index.js';
import { fenceState } from '../../engine/cutover/fence.js';
import { startClusters, type LocalCluster } from '../../local/dev/cluster.js';
import { runLocalWorkflow, type LocalRunResult } from '../../local/runner/index.js';
import { createWorkloadSchema, startWorkload } from '../../local/dev/workload.js';
import { clientConfig, scratchDir } from '../support/clusters.js';
import { databaseHashes } from '../support/equality.js';
import { sleep, waitFor as waitUntil } from '../support/wait.js';

let source: LocalCluster;
let target: LocalCluster;
const scratch = scratchDir('cutover-fence');
const DB = 'bank';

beforeAll(async () => {
  [source, target] = await startClusters([
    { major: 15, label: 'fence15' },
    { major: 17, label: 'fence17' },
  ]);
});

afterAll(async () => {
  await Promise.all([source, target].map((c) => c?.stop()));
  scratch.remove();
});

const waitFor = <T>(what: string, probe: () => Promise<T | undefined | false | null>) => waitUntil(what, probe, 120_000, 50);

async function sourceSession(applicationName: string): Promise<pg.Client> {
  const client = new pg.Client({ ...clientConfig(source, DB), application_name: applicationName });
  client.on('error', () => undefined);
  await client.connect();
  return client;
}

describe('cutover with cutover.fenceSource', () => {
  it('refuses writes after the fence under load, ends with the target equal to the source, and applies and reports a write past the fence', async () => {
    await source.sql(`CREATE DATABASE ${DB}`);
    await target.sql(`CREATE DATABASE ${DB}`);
    const setup = await source.connect(DB);
    await createWorkloadSchema(setup, { scale: 1, accountsPerScale: 5_000 });
    await setup.end();
    const workload = startWorkload(() => source.connect(DB), { clients: 2, ratePerSecond: 100, seed: 3, scale: 1, accountsPerScale: 5_000 });

    const name = 'fenced-bank';
    const spec = {
      name,
      mode: 'full+cdc',
      source: { secret: scratch.secretFor(`${name}-source`, source), database: DB },
      target: { secret: scratch.secretFor(`${name}-target`, target), database: DB },
      fullLoad: { parallelism: 2 },
      cutover: { mode: 'manual', fenceSource: true, maxLagSeconds: 5 },
    };
    let result: LocalRunResult | undefined;
    const run = runLocalWorkflow(spec).then((r) => (result = r));
    const control = await target.connect(DB);
    // Writes past the fence: a session the fence keeps (pgferry's own name), with a transaction id
    // taken before the fence, that writes as a replica after the drain point.
    let leak: pg.Client | undefined;
    try {
      await waitFor('the streamer to apply', async () => (await readReplicationStatus(control, name))?.streamingSince);
      await waitFor('the workload to be replicated', async () => ((await readReplicationStatus(control, name))?.rowsApplied ?? 0) > 200);
      leak = await sourceSession('pgferry-leak');
      await leak.query('BEGIN READ WRITE');
      await leak.query('SELECT txid_current()');

      expect(await requestCutover(control, name)).toBe(true);
      await waitFor('the drain point', async () => (await readReplicationStatus(control, name))?.drainLsn);
      expect(result).toBeUndefined();

      // A new application session cannot write, even asking for a read-write transaction.
      const app = await sourceSession('app');
      await expect(app.query('BEGIN READ WRITE; UPDATE pgbench_accounts SET abalance = abalance + 1 WHERE aid = 2; COMMIT')).rejects.toMatchObject({
        code: '25006',
        message: expect.stringContaining(`fenced by pgferry migration ${name}`),
      });
      await app.end();

      await leak.query('SET LOCAL session_replication_role = replica');
      await leak.query('UPDATE pgbench_accounts SET abalance = 424242 WHERE aid = 1');
      await leak.query('COMMIT');
      await run;
    } finally {
      await leak?.end().catch(() => undefined);
      await control.end();
    }
    const stats = await Promise.race([workload.finished, sleep(30_000).then(() => workload.stop())]);
    expect(result, JSON.stringify(result)).toMatchObject({ status: 'SUCCEEDED' });
    // The fence stopped the load (its sessions are kept, their writes refused).
    expect(stats.stoppedBecause).toMatch(/25006|57P01/);
    expect(stats.transactions).toBeGreaterThan(50);

    // The write past the fence reached the target, and is reported.
    const [row] = await target.sql('SELECT abalance FROM pgbench_accounts WHERE aid = 1', DB);
    expect(row!.rows[0].abalance).toBe(424242);
    const reader = await target.connect(DB);
    try {
      const late = await readLateChanges(reader, name);
      expect(late).toEqual([expect.objectContaining({ schema: 'public', table: 'pgbench_accounts', rows: 1, keys: [expect.stringMatching(/^update /)] })]);
      const { rows: events } = await reader.query<{ level: string; message: string }>(
        "SELECT level, message FROM pgferry.events WHERE migration = $1 AND message LIKE '%past the fence%'",
        [name],
      );
      expect(events).toEqual([{ level: 'warn', message: expect.stringMatching(/public\.pgbench_accounts at .* \(1 row change\(s\): update /) }]);
    } finally {
      await reader.end();
    }

    const [sourceHashes, targetHashes] = await Promise.all([databaseHashes(source, DB), databaseHashes(target, DB)]);
    expect(Object.keys(sourceHashes).length).toBeGreaterThan(0);
    expect(targetHashes).toEqual(sourceHashes);
    const [slots] = await source.sql("SELECT count(*)::int AS n FROM pg_replication_slots WHERE slot_name LIKE 'pgferry%'");
    expect(slots!.rows[0].n).toBe(0);
    // The source stays fenced after cutover (lifted by fallback, finish or cleanup); the fence never reached the target.
    const fenced = await source.connect(DB);
    expect(await fenceState(fenced)).toMatchObject({ fenced: true, migration: name, readOnlyDefault: true });
    await fenced.end();
    const [targetTriggers] = await target.sql("SELECT count(*)::int AS n FROM pg_trigger WHERE tgname = 'pgferry_fence'", DB);
    expect(targetTriggers!.rows[0].n).toBe(0);
  });
});

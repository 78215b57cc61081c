/**
 * A step's sides out of reach, and a password rotated under a running migration, against a real
 * cluster: a TCP proxy in front of it takes it out of reach the way a failover does.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connectSide, UnreachableError } from '../../engine/connect/index.js';
import { beginMigration, ensureControlSchema, setPhase } from '../../engine/control/index.js';
import { exportSnapshotStep } from '../../engine/steps/export-snapshot.js';
import { migrationSpecSchema, type MigrationSpec } from '../../engine/spec/index.js';
import { withSides } from '../../engine/steps/sides.js';
import { streamConfigOf } from '../../engine/steps/replication.js';
import { startClusters, type LocalCluster } from '../../local/dev/cluster.js';
import { DefaultSecretsProvider } from '../../platform/secrets/index.js';
import { scratchDir, withClient } from '../support/clusters.js';
import { failureOf } from '../support/failure.js';
import { OutageProxy } from '../support/outage-proxy.js';
import { waitFor } from '../support/wait.js';

const scratch = scratchDir('unreachable');
const secrets = new DefaultSecretsProvider();
let cluster: LocalCluster;
let proxy: OutageProxy;

beforeAll(async () => {
  [cluster] = await startClusters([{ major: 17, label: 'unreachable' }]);
  proxy = await OutageProxy.start(cluster.connection);
});

afterAll(async () => {
  await proxy?.stop();
  await cluster?.stop();
  scratch.remove();
});

function specThroughProxy(name: string, secretFields: Record<string, unknown> = {}): MigrationSpec {
  return migrationSpecSchema.parse({
    name,
    mode: 'full+cdc',
    source: { secret: scratch.secretFor(`${name}-source`, cluster, secretFields) },
    target: { secret: scratch.secretFor(`${name}-target`, cluster, { port: proxy.port, ...secretFields }) },
  });
}

describe('a step whose side is out of reach', () => {
  it('that goes away during the step fails with pgferry.Unreachable naming the side and its host', async () => {
    const spec = specThroughProxy('lost-mid-step');
    const failure = failureOf(
      withSides(spec, secrets, { source: true, target: true }, async ({ target }) => {
        const query = target.query('SELECT pg_sleep(30)');
        await new Promise((resolve) => setTimeout(resolve, 300));
        await proxy.cut();
        await query;
      }),
    );
    const error = await failure;
    await proxy.restore();
    // The server notices the lost client only when it next writes to it: end the sleeping session.
    await cluster.sql("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE query = 'SELECT pg_sleep(30)'");
    expect(error).toBeInstanceOf(UnreachableError);
    expect(error).toMatchObject({ name: 'pgferry.Unreachable', side: 'target' });
    expect(error.message).toContain(`Lost the connection to the target (127.0.0.1:${proxy.port}/postgres) during the step`);
    expect(error.message).not.toContain(cluster.connection.password);
  });

  it('that cannot be reached fails with pgferry.Unreachable after retrying briefly, and the other side is closed', async () => {
    const spec = specThroughProxy('down-at-start');
    await proxy.cut();
    try {
      const error = await failureOf(withSides(spec, secrets, { source: true, target: true }, async () => 'never'));
      expect(error).toMatchObject({ name: 'pgferry.Unreachable', side: 'target', code: 'ECONNREFUSED' });
      expect(error.message).toContain(`Cannot reach the target (127.0.0.1:${proxy.port}/postgres as postgres)`);
      expect(error.message).not.toContain(cluster.connection.password);
    } finally {
      await proxy.restore();
    }
    await waitFor('the source session of the step to end', async () => {
      const [sessions] = await cluster.sql("SELECT count(*)::int AS n FROM pg_stat_activity WHERE application_name = 'pgferry'");
      return sessions!.rows[0].n === 0;
    });
  });
});

describe('a rotated password', () => {
  it('is read again by the streamer at its next replication connection', async () => {
    await cluster.sql("CREATE ROLE rotating LOGIN REPLICATION PASSWORD 'first-password-1'");
    const spec = specThroughProxy('rotation', { username: 'rotating', password: 'first-password-1' });
    const streamConfig = await streamConfigOf(spec, secrets);
    expect((await streamConfig()).user).toBe('rotating');
    await cluster.sql("ALTER ROLE rotating PASSWORD 'second-password-2'");
    scratch.secretFor('rotation-source', cluster, { username: 'rotating', password: 'second-password-2' });
    const config = await streamConfig();
    expect(config).toMatchObject({ user: 'rotating', replication: 'database' });
  });
});

describe('the snapshot holder of a full load', () => {
  it('holds the snapshot while the target is out of reach, and releases it once the migration says so', async () => {
    const spec = migrationSpecSchema.parse({ ...specThroughProxy('held-snapshot'), mode: 'full', cdc: { retryWindowMinutes: 1 } });
    await withClient(cluster, async (client) => {
      await ensureControlSchema(client);
      await beginMigration(client, spec.name, spec);
    });
    let reported!: (snapshot: string) => void;
    const snapshot = new Promise<string>((resolve) => (reported = resolve));
    const held = exportSnapshotStep(
      {
        migration: spec.name,
        spec,
        connectSource: () => connectSide('source', spec.source, secrets),
        connectTarget: () => connectSide('target', spec.target, secrets),
        log: () => undefined,
        callback: { success: async (output) => reported((output as { snapshot: string }).snapshot), reportFailure: async () => undefined },
        gone: new AbortController().signal,
      },
      { maxHoldMs: 600_000 },
    );
    const id = await snapshot;
    await proxy.cut();
    // A few polls of the holder fail while the target is away: the same path as a longer outage within the window.
    await new Promise((resolve) => setTimeout(resolve, 4_000));
    await proxy.restore();
    await withClient(cluster, async (client) => {
      await client.query('BEGIN ISOLATION LEVEL REPEATABLE READ');
      await client.query(`SET TRANSACTION SNAPSHOT '${id}'`);
      await client.query('COMMIT');
      await setPhase(client, spec.name, 'done');
    });
    await held;
  });
});

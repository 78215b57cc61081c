/**
 * A server that ends an idle session (a restart, a failover, idle_session_timeout,
 * pg_terminate_backend) must not crash the process: every connection has an error listener
 * from the moment it connects, and the loss shows at its next use.
 */
import type pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { watchMigration } from '../../bin/watch.js';
import { connectSide } from '../../engine/connect/index.js';
import { startClusters, type LocalCluster } from '../../local/dev/cluster.js';
import { DefaultSecretsProvider } from '../../platform/secrets/index.js';
import { scratchDir, withClient } from '../support/clusters.js';
import { waitFor } from '../support/wait.js';

const scratch = scratchDir('idle-sessions');
const secrets = new DefaultSecretsProvider();
let cluster: LocalCluster;
let settings: { secret: string };

beforeAll(async () => {
  [cluster] = await startClusters([{ major: 17, label: 'idle-sessions' }]);
  settings = { secret: scratch.secretFor('target', cluster) };
});

afterAll(async () => {
  await cluster?.stop();
  scratch.remove();
});

/** Ends the server sessions of `applicationName`, as a restart or an idle timeout would. */
async function endSessions(applicationName: string): Promise<void> {
  await withClient(cluster, (admin) =>
    admin.query('SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1', [applicationName]),
  );
}

const fails = (client: pg.Client) => client.query('SELECT 1').then(() => false, () => true);

describe('sessions the server ends while they are idle', () => {
  it('fail their next query with an error instead of crashing the process', async () => {
    const client = await connectSide('target', settings, secrets, { applicationName: 'pgferry-idle-test' });
    try {
      await endSessions('pgferry-idle-test');
      await waitFor('the ended session to fail its next query', () => fails(client));
    } finally {
      await client.end().catch(() => undefined);
    }
  });

  it('leave the live progress of pgferry run going: it says the target does not answer, then reconnects', async () => {
    let watched: pg.Client | undefined;
    const shown: string[][] = [];
    const progress = { onEvent: () => undefined, note: () => undefined, detail: (lines: string[]) => shown.push(lines), stop: () => undefined };
    const watch = watchMigration(
      async () => (watched = await connectSide('target', settings, secrets, { applicationName: 'pgferry-progress-test' })),
      'not-registered',
      progress,
    );
    try {
      await waitFor('the watch to poll', () => shown.length > 0);
      await endSessions('pgferry-progress-test');
      await waitFor('the ended progress session to fail its next query', () => watched && fails(watched));
      const polled = shown.length;
      await waitFor('the watch to reconnect after losing its session', () => shown.length > polled && shown.at(-1)!.length === 0);
      expect(shown.slice(polled).some((lines) => lines[0]?.startsWith('Target not answering for '))).toBe(true);
    } finally {
      await watch.stop();
    }
    expect(shown.at(-1)).toEqual([]);
  });
});

/**
 * A task that starts while the target is away (a restart, a failover) reads the run's spec from
 * the target once it is back, within the window the workflow passes it (the spec's
 * cdc.retryWindowMinutes); without a window it fails at once, as before.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { beginMigration, ensureControlSchema } from '../../engine/control/index.js';
import { parseSpec } from '../../engine/spec/index.js';
import { startCluster, type LocalCluster } from '../../local/dev/cluster.js';
import { taskContext } from '../../tasks/task.js';
import { scratchDir } from '../support/clusters.js';
import { sleep } from '../support/wait.js';

let cluster: LocalCluster;
const scratch = scratchDir('task-start');

beforeAll(async () => {
  cluster = await startCluster({ major: 17, label: 'taskstart' });
});

afterAll(async () => {
  await cluster?.stop();
  scratch.remove();
});

describe('a task started during a target outage', () => {
  it('waits for the target within the retry window, then reads the spec', async () => {
    const target = await cluster.connect();
    const secret = scratch.secretFor('target', cluster);
    const spec = parseSpec({ name: 'task-start', source: { secret, database: 'postgres' }, target: { secret, database: 'template1' } });
    try {
      await ensureControlSchema(target);
      await beginMigration(target, 'task-start', spec);
    } finally {
      await target.end();
    }
    const env = {
      PGFERRY_MIGRATION: 'task-start',
      PGFERRY_TARGET: JSON.stringify({ secret }),
    };
    await cluster.stopServer();
    try {
      await expect(taskContext('copy', env)).rejects.toThrow(/ECONNREFUSED|reach the target/);
      const started = taskContext('copy', { ...env, PGFERRY_RETRY_WINDOW_MINUTES: '1' });
      started.catch(() => undefined);
      await sleep(3_000);
      await cluster.startServer();
      expect((await started).spec.name).toBe('task-start');
    } finally {
      await cluster.startServer().catch(() => undefined);
    }
  });
});

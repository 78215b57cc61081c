import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { registerReplication, recordFence } from '../../engine/cdc/state.js';
import { ensurePublication } from '../../engine/cdc/slot.js';
import { beginMigration, ensureControlSchema } from '../../engine/control/index.js';
import { fenceSource } from '../../engine/cutover/index.js';
import { handler } from '../../lambdas/cleanup.js';
import { startClusters, type LocalCluster } from '../../local/cluster.js';
import { scratchDir } from '../support/clusters.js';

let cluster: LocalCluster;
const scratch = scratchDir('cleanup');

beforeAll(async () => {
  [cluster] = await startClusters([{ major: 17, label: 'cleanup' }]);
});

afterAll(async () => {
  await cluster?.stop();
  scratch.remove();
});

/** What EventBridge delivers for an execution that was stopped (StopExecution) or timed out. */
const statusChange = (status: 'ABORTED' | 'TIMED_OUT', input: string | null) => ({
  version: '0',
  id: 'e1',
  'detail-type': 'Step Functions Execution Status Change' as const,
  source: 'aws.states',
  account: '123456789012',
  time: '2026-11-23T12:00:00Z',
  region: 'eu-west-1',
  resources: ['arn:aws:states:eu-west-1:123456789012:execution:pgferry:run-1'],
  detail: { status, executionArn: 'arn:aws:states:eu-west-1:123456789012:execution:pgferry:run-1', input },
});
const context = { functionName: 'Cleanup', awsRequestId: 'r1', getRemainingTimeInMillis: () => 60_000 } as never;

describe('Cleanup for a stopped execution (EventBridge rule on ABORTED / TIMED_OUT)', () => {
  it('lifts the cutover fence, drops the slot and the publication, and marks the migration failed', async () => {
    await cluster.sql('CREATE DATABASE app');
    await cluster.sql('CREATE DATABASE app_target');
    await cluster.sql('CREATE TABLE t (id int PRIMARY KEY)', 'app');
    const name = 'stopped-run';
    const spec = {
      name,
      mode: 'full+cdc',
      source: { secret: scratch.secretFor('source', cluster), database: 'app' },
      target: { secret: scratch.secretFor('target', cluster), database: 'app_target' },
    };
    const source = await cluster.connect('app');
    const target = await cluster.connect('app_target');
    try {
      await ensureControlSchema(target);
      await beginMigration(target, name, { mode: 'full+cdc' });
      await ensurePublication(source, { name: 'pgferry_stopped_run', tables: [{ schema: 'public', name: 't' }] });
      await source.query("SELECT pg_create_logical_replication_slot('pgferry_stopped_run', 'pgoutput')");
      await registerReplication(target, name, { slotName: 'pgferry_stopped_run', publicationName: 'pgferry_stopped_run', consistentLsn: null });
      await recordFence(target, name, true);
      await fenceSource(source);
    } finally {
      await Promise.all([source.end(), target.end()]);
    }

    const result = await handler(statusChange('ABORTED', JSON.stringify(spec)), context);
    expect(result).toEqual({ cleaned: true, unfenced: true, slotDropped: true, publicationDropped: true });
    const [slots] = await cluster.sql('SELECT count(*)::int AS n FROM pg_replication_slots');
    expect(slots!.rows[0].n).toBe(0);
    const [readOnly, publications] = await cluster.sql('SHOW default_transaction_read_only; SELECT count(*)::int AS n FROM pg_publication', 'app');
    expect(readOnly!.rows[0].default_transaction_read_only).toBe('off');
    expect(publications!.rows[0].n).toBe(0);
    const [phase] = await cluster.sql(`SELECT phase, error FROM pgferry.migrations WHERE name = '${name}'`, 'app_target');
    expect(phase!.rows[0]).toEqual({ phase: 'failed', error: expect.stringMatching(/^pgferry\.Stopped: The execution .* ended ABORTED\.$/) });
  });

  it('says why there is nothing to clean when the execution had no valid spec', async () => {
    const result = await handler(statusChange('TIMED_OUT', '{"name": "x"}'), context);
    expect(result).toEqual({ cleaned: false, reason: expect.stringContaining('had no valid spec as input') });
  });
});

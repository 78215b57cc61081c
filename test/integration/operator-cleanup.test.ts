/**
 * The Operator's cleanup action (`pgferry stop EXECUTION_ARN` of an execution that has ended
 * while its run stayed registered, the stack's cleanup rule having failed) against a real
 * PostgreSQL.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { beginMigration, ensureControlSchema, registerReplication, setPhase } from '../../engine/control/index.js';
import { ensurePublication } from '../../engine/cdc/slot.js';
import { handler } from '../../lambdas/operate.js';
import { startClusters, type LocalCluster } from '../../local/dev/cluster.js';
import { scratchDir } from '../support/clusters.js';

let cluster: LocalCluster;
const scratch = scratchDir('operator-cleanup');
const context = { functionName: 'Operator', awsRequestId: 'r1', getRemainingTimeInMillis: () => 60_000 } as never;
const RUN_1 = 'arn:aws:states:eu-west-1:123456789012:execution:pgferry:run-1';
const RUN_2 = 'arn:aws:states:eu-west-1:123456789012:execution:pgferry:run-2';

beforeAll(async () => {
  [cluster] = await startClusters([{ major: 17, label: 'operator-cleanup' }]);
  await cluster.sql('CREATE DATABASE app');
  await cluster.sql('CREATE DATABASE app_target');
  await cluster.sql('CREATE TABLE t (id int PRIMARY KEY)', 'app');
});

afterAll(async () => {
  await cluster?.stop();
  scratch.remove();
});

const spec = () => ({
  name: 'left-behind',
  mode: 'full+cdc',
  source: { secret: scratch.secretFor('source', cluster), database: 'app' },
  target: { secret: scratch.secretFor('target', cluster), database: 'app_target' },
});

/** A run of `execution` registered in phase replicate, with its slot and publication on the source. */
async function registeredRun(execution: string): Promise<void> {
  const source = await cluster.connect('app');
  const target = await cluster.connect('app_target');
  try {
    await ensureControlSchema(target);
    await target.query("UPDATE pgferry.migrations SET phase = 'failed' WHERE name = 'left-behind'");
    await beginMigration(target, 'left-behind', { mode: 'full+cdc' }, execution);
    await setPhase(target, 'left-behind', 'replicate');
    await ensurePublication(source, { name: 'pgferry_left_behind', tables: [{ schema: 'public', name: 't' }] });
    const { rowCount } = await source.query("SELECT 1 FROM pg_replication_slots WHERE slot_name = 'pgferry_left_behind'");
    if (!rowCount) await source.query("SELECT pg_create_logical_replication_slot('pgferry_left_behind', 'pgoutput')");
    await registerReplication(target, 'left-behind', { slotName: 'pgferry_left_behind', publicationName: 'pgferry_left_behind', consistentLsn: null });
  } finally {
    await Promise.all([source.end(), target.end()]);
  }
}

async function leftovers() {
  const [slots] = await cluster.sql("SELECT count(*)::int AS n FROM pg_replication_slots WHERE slot_name = 'pgferry_left_behind'");
  const [publications] = await cluster.sql("SELECT count(*)::int AS n FROM pg_publication WHERE pubname = 'pgferry_left_behind'", 'app');
  const [run] = await cluster.sql("SELECT phase, error, execution FROM pgferry.migrations WHERE name = 'left-behind'", 'app_target');
  return { slots: slots!.rows[0].n, publications: publications!.rows[0].n, run: run!.rows[0] };
}

describe('Operator cleanup', () => {
  it("leaves another execution's run alone, then pauses its own run (slot kept); with abandon, marks it failed and drops the slot and publication", async () => {
    await registeredRun(RUN_1);

    const notOurs = await handler({ action: 'cleanup', spec: spec(), execution: RUN_2 }, context);
    expect(notOurs).toEqual({ action: 'cleanup', result: { cleaned: false, paused: false, reason: `migration left-behind on the target belongs to ${RUN_1}, not to ${RUN_2}` } });
    expect(await leftovers()).toMatchObject({ slots: 1, publications: 1, run: { phase: 'replicate' } });

    const ours = await handler({ action: 'cleanup', spec: spec(), execution: RUN_1 }, context);
    expect(ours).toEqual({ action: 'cleanup', result: { cleaned: true, paused: true, unfenced: false } });
    expect(await leftovers()).toEqual({ slots: 1, publications: 1, run: { phase: 'paused', error: 'pgferry.Stopped: Stopped with pgferry stop', execution: RUN_1 } });

    const abandoned = await handler({ action: 'cleanup', spec: spec(), execution: RUN_1, abandon: true }, context);
    expect(abandoned).toEqual({ action: 'cleanup', result: { cleaned: true, paused: false, unfenced: false, slotDropped: true, publicationDropped: true } });
    expect(await leftovers()).toEqual({
      slots: 0,
      publications: 0,
      run: { phase: 'failed', error: 'abandoned while paused; pgferry.Stopped: Stopped with pgferry stop', execution: RUN_1 },
    });
  });

  it('leaves a run that finished as done', async () => {
    await registeredRun(RUN_2);
    const target = await cluster.connect('app_target');
    await setPhase(target, 'left-behind', 'done').finally(() => target.end());

    const result = await handler({ action: 'cleanup', spec: spec(), execution: RUN_2 }, context);

    expect(result).toEqual({ action: 'cleanup', result: { cleaned: false, paused: false, reason: 'migration left-behind finished (phase done): there is nothing to clean up' } });
    expect(await leftovers()).toMatchObject({ slots: 1, run: { phase: 'done', execution: RUN_2 } });
  });
});

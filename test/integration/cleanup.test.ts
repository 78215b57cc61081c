import type pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { beginMigration, ensureControlSchema, recordFence, registerReplication, requestApply, setPhase } from '../../engine/control/index.js';
import { replicationStatusStep } from '../../engine/steps/replication-status.js';
import { parseSpec } from '../../engine/spec/index.js';
import { DefaultSecretsProvider } from '../../platform/secrets/index.js';
import { waitFor } from '../support/wait.js';
import { defaultSlotName, ensurePublication } from '../../engine/cdc/slot.js';
import { fenceWrites } from '../../engine/cutover/fence.js';
import { handler } from '../../lambdas/cleanup.js';
import { cleanupStep } from '../../engine/steps/cleanup.js';
import { startClusters, type LocalCluster } from '../../local/dev/cluster.js';
import { runCli } from '../support/cli.js';
import { scratchDir } from '../support/clusters.js';
import { failureOf } from '../support/failure.js';

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
const RUN_1 = 'arn:aws:states:eu-west-1:123456789012:execution:pgferry:run-1';
const statusChange = (status: 'ABORTED' | 'TIMED_OUT' | 'FAILED', input: string | null, executionArn = RUN_1) => ({
  version: '0',
  id: 'e1',
  'detail-type': 'Step Functions Execution Status Change' as const,
  source: 'aws.states',
  account: '123456789012',
  time: '2026-11-23T12:00:00Z',
  region: 'eu-west-1',
  resources: [executionArn],
  detail: { status, executionArn, input },
});
const context = { functionName: 'Cleanup', awsRequestId: 'r1', getRemainingTimeInMillis: () => 60_000 } as never;

/**
 * A run of migration `name` that `execution` began: databases `db` (with a table t) and `db`_target, the
 * control schema, and the slot defaultSlotName(`name`) on the source; with `publication`, also a publication
 * of the slot's name and the replication registered. `also` runs on both clients before they close.
 */
async function registeredRun(
  db: string,
  name: string,
  execution: string,
  { publication = false, also }: { publication?: boolean; also?: (source: pg.Client, target: pg.Client) => Promise<void> } = {},
) {
  await cluster.sql(`CREATE DATABASE ${db}`);
  await cluster.sql(`CREATE DATABASE ${db}_target`);
  await cluster.sql('CREATE TABLE t (id int PRIMARY KEY)', db);
  const spec = {
    name,
    mode: 'full+cdc',
    source: { secret: scratch.secretFor(`${db}-source`, cluster), database: db },
    target: { secret: scratch.secretFor(`${db}-target`, cluster), database: `${db}_target` },
  };
  const slotName = defaultSlotName(name);
  const source = await cluster.connect(db);
  const target = await cluster.connect(`${db}_target`);
  try {
    await ensureControlSchema(target);
    await beginMigration(target, name, { mode: 'full+cdc' }, execution);
    if (publication) await ensurePublication(source, { name: slotName, tables: [{ schema: 'public', name: 't' }] });
    await source.query("SELECT pg_create_logical_replication_slot($1, 'pgoutput')", [slotName]);
    if (publication) await registerReplication(target, name, { slotName, publicationName: slotName, consistentLsn: null });
    await also?.(source, target);
  } finally {
    await Promise.all([source.end(), target.end()]);
  }
  return { spec };
}

/** How many replication slots the cluster has named `slotName` (without one: in all). */
async function slotCount(slotName?: string): Promise<number> {
  const [slots] = await cluster.sql(`SELECT count(*)::int AS n FROM pg_replication_slots${slotName ? ` WHERE slot_name = '${slotName}'` : ''}`);
  return slots!.rows[0].n;
}

describe('Cleanup for an execution that ended without succeeding (EventBridge rule on ABORTED / TIMED_OUT / FAILED)', () => {
  it('pauses a run whose slot exists: lifts the cutover fence, keeps the slot and the publication; an abandon then drops them', async () => {
    const name = 'stopped-run';
    const { spec } = await registeredRun('app', name, RUN_1, {
      publication: true,
      also: async (source, target) => {
        await recordFence(target, name, true);
        await fenceWrites(source, [{ schema: 'public', name: 't' }], { migration: name });
      },
    });

    const result = await handler(statusChange('ABORTED', JSON.stringify(spec)), context);
    expect(result).toEqual({ cleaned: true, paused: true, unfenced: true });
    expect(await slotCount()).toBe(1);
    const publicationCount = async () => (await cluster.sql('SELECT count(*)::int AS n FROM pg_publication', 'app'))[0]!.rows[0].n;
    const [readOnly] = await cluster.sql('SHOW default_transaction_read_only', 'app');
    expect(readOnly!.rows[0].default_transaction_read_only).toBe('off');
    const [triggers] = await cluster.sql("SELECT count(*)::int AS n FROM pg_trigger WHERE tgname = 'pgferry_fence'", 'app');
    expect(triggers!.rows[0].n).toBe(0);
    expect(await publicationCount()).toBe(1);
    const phaseRow = async () => (await cluster.sql(`SELECT phase, error FROM pgferry.migrations WHERE name = '${name}'`, 'app_target'))[0]!.rows[0];
    expect(await phaseRow()).toEqual({ phase: 'paused', error: expect.stringMatching(/^pgferry\.Stopped: The execution .* ended ABORTED\.$/) });
    const [fence] = await cluster.sql(`SELECT fenced FROM pgferry.replication_status WHERE migration = '${name}'`, 'app_target');
    expect(fence!.rows[0].fenced).toBe(false);

    // The event again (EventBridge delivers at least once): the run stays paused.
    expect(await handler(statusChange('ABORTED', JSON.stringify(spec)), context)).toMatchObject({ cleaned: true, paused: true });
    // pgferry stop --drop: the run is abandoned, its slot and publication dropped.
    const abandoned = await cleanupStep(parseSpec(spec), new DefaultSecretsProvider(), { Error: 'pgferry.Stopped' }, RUN_1, { abandon: true });
    expect(abandoned).toEqual({ cleaned: true, paused: false, unfenced: false, slotDropped: true, publicationDropped: true });
    expect(await slotCount()).toBe(0);
    expect(await publicationCount()).toBe(0);
    expect(await phaseRow()).toEqual({ phase: 'failed', error: expect.stringMatching(/^abandoned while paused; pgferry\.Stopped: The execution/) });
  });

  it('says why there is nothing to clean when the execution had no valid spec', async () => {
    const result = await handler(statusChange('TIMED_OUT', '{"name": "x"}'), context);
    expect(result).toMatchObject({ cleaned: false, reason: expect.stringContaining('had no valid spec as input') });
  });

  it("leaves a later run of the same name alone, and keeps the reason the workflow recorded for its own failure", async () => {
    const name = 'rerun';
    const RUN_2 = 'arn:aws:states:eu-west-1:123456789012:execution:pgferry:run-2';
    // run-1 was stopped long ago; run-2 of the same migration is replicating now.
    const { spec } = await registeredRun('app2', name, RUN_2, { publication: true });

    const late = await handler(statusChange('ABORTED', JSON.stringify(spec), RUN_1), context);
    expect(late).toMatchObject({ cleaned: false, paused: false, reason: expect.stringContaining(`belongs to ${RUN_2}`) });
    expect(await slotCount('pgferry_rerun')).toBe(1);

    // run-2 fails; its Catch ran Cleanup with the real reason, then the FAILED event arrives.
    const normalized = { ...spec, cdc: { keepSlotOnFailure: false } };
    const caught = await handler({ spec: normalized, error: { Error: 'pgferry.CompareMismatch', Cause: 'public.t differs' } }, context);
    // Its slot exists: the run pauses, slot kept.
    expect(caught).toEqual({ cleaned: true, paused: true, unfenced: false });
    const again = await handler(statusChange('FAILED', JSON.stringify(spec), RUN_2), context);
    expect(again).toMatchObject({ cleaned: true, paused: true });
    expect(await slotCount('pgferry_rerun')).toBe(1);
    const [phase] = await cluster.sql(`SELECT phase, error FROM pgferry.migrations WHERE name = '${name}'`, 'app2_target');
    expect(phase!.rows[0]).toEqual({ phase: 'paused', error: 'pgferry.CompareMismatch: public.t differs' });
  });

  it('leaves the slot alone when it cannot tell whose run it is (the target is unreachable)', async () => {
    await cluster.sql('CREATE DATABASE blind');
    await cluster.sql("SELECT pg_create_logical_replication_slot('pgferry_blind', 'pgoutput')", 'blind');
    const spec = {
      name: 'blind',
      mode: 'full+cdc',
      source: { secret: scratch.secretFor('blind-source', cluster), database: 'blind' },
      target: { secret: scratch.secretFor('blind-target', cluster), database: 'no_such_database' },
    };
    const result = await handler(statusChange('FAILED', JSON.stringify(spec)), context);
    expect(result).toMatchObject({
      cleaned: false,
      reason: expect.stringMatching(/^control schema: Cannot connect to the target .*; the replication slot and publication were left alone, .* run "pgferry stop arn:aws:states:.*:run-1" once the target is reachable$/),
    });
    expect(await slotCount('pgferry_blind')).toBe(1);
    await cluster.sql("SELECT pg_drop_replication_slot('pgferry_blind')");
  });

  it('does nothing for an execution that never registered its migration', async () => {
    const spec = { name: 'never-started', mode: 'full+cdc', source: { secret: scratch.secretFor('source3', cluster), database: 'app' }, target: { secret: scratch.secretFor('target3', cluster), database: 'app_target' } };
    const result = await handler(statusChange('FAILED', JSON.stringify(spec)), context);
    expect(result).toMatchObject({ cleaned: false, reason: expect.stringContaining('never registered migration never-started') });
  });
});

describe('the CDC status loop', () => {
  it('answers "wait" when the target goes away while it waits (a failover), so the next turn connects again', async () => {
    await cluster.sql('CREATE DATABASE loop_target');
    const target = await cluster.connect('loop_target');
    try {
      await ensureControlSchema(target);
      await beginMigration(target, 'looping', { mode: 'cdc' }, 'local:looping');
      await registerReplication(target, 'looping', { slotName: 'pgferry_looping', publicationName: 'pgferry_looping', consistentLsn: null });
      await requestApply(target, 'looping');
    } finally {
      await target.end();
    }
    const spec = parseSpec(
      {
        name: 'looping',
        mode: 'cdc',
        source: { secret: scratch.secretFor('loop-source', cluster), database: 'postgres' },
        target: { secret: scratch.secretFor('loop-target', cluster), database: 'loop_target' },
      }
    );
    const answer = replicationStatusStep(spec, new DefaultSecretsProvider(), { waitUpToSeconds: 60 });
    // Idle after reading the status: it has its first answer and waits to look again.
    await waitFor('the status step to wait between looks', async () => {
      const [sessions] = await cluster.sql(
        "SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = 'loop_target' AND application_name = 'pgferry' AND state = 'idle' AND query LIKE '%heartbeat_age%'",
      );
      return sessions!.rows[0].n > 0;
    });
    await cluster.sql("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = 'loop_target' AND application_name = 'pgferry'");
    await expect(answer).resolves.toMatchObject({ action: 'wait' });
  });
});

describe('one run per migration name', () => {
  it('refuses a second run while one is under way, lets the same execution register again, and a run that ended be replaced', async () => {
    await cluster.sql('CREATE DATABASE once_target');
    const target = await cluster.connect('once_target');
    const RUN_A = 'arn:aws:states:eu-west-1:123456789012:execution:pgferry:a';
    const RUN_B = 'arn:aws:states:eu-west-1:123456789012:execution:pgferry:b';
    try {
      await ensureControlSchema(target);
      await beginMigration(target, 'once', { mode: 'full+cdc' }, RUN_A);
      // A start event delivered twice: the second execution must not take over the first's run.
      const refused = await failureOf(beginMigration(target, 'once', { mode: 'full+cdc' }, RUN_B));
      expect(refused?.name).toBe('pgferry.MigrationRunning');
      expect(refused?.message).toContain(`Migration once is already running on this target (phase schema since`);
      expect(refused?.message).toContain(`execution ${RUN_A}`);
      expect(refused?.message).toContain(`pgferry stop ${RUN_A}`);
      // A retried SchemaPreData of the same execution registers again.
      await beginMigration(target, 'once', { mode: 'full+cdc' }, RUN_A);
      await setPhase(target, 'once', 'failed', 'pgferry.Stopped: stopped');
      await beginMigration(target, 'once', { mode: 'full+cdc' }, RUN_B);
      const { rows } = await target.query("SELECT execution, phase FROM pgferry.migrations WHERE name = 'once'");
      expect(rows).toEqual([{ execution: RUN_B, phase: 'schema' }]);
    } finally {
      await target.end();
    }
  });

  it('the Cleanup of a refused execution leaves the running one alone', async () => {
    const { spec } = await registeredRun('guard', 'guarded', 'local:running');
    const result = await handler({ spec, error: { Error: 'pgferry.MigrationRunning', Cause: '…' }, execution: 'local:refused' }, context);
    expect(result).toMatchObject({ cleaned: false, reason: expect.stringContaining('belongs to local:running, not to local:refused') });
    expect(await slotCount('pgferry_guarded')).toBe(1);
    const [phase] = await cluster.sql("SELECT phase FROM pgferry.migrations WHERE name = 'guarded'", 'guard_target');
    expect(phase!.rows[0].phase).toBe('schema');

    // The runner of that run is gone: `pgferry stop SPEC` ends it so the migration can run again.
    const specFile = scratch.writeJson('guarded.json', spec);
    expect(await runCli('stop', specFile)).toEqual({
      code: 0,
      stdout: 'Migration guarded is marked failed; dropped the replication slot. It can run again.\n',
      stderr: '',
    });
    expect(await slotCount('pgferry_guarded')).toBe(0);
  });

  it('pgferry stop SPEC refuses a run of an AWS execution, naming the ARN to stop instead', async () => {
    const RUN = 'arn:aws:states:eu-west-1:123456789012:execution:pgferry:aws-run';
    const { spec } = await registeredRun('aws_run', 'on-aws', RUN);
    const specFile = scratch.writeJson('on-aws.json', spec);
    expect(await runCli('stop', specFile)).toEqual({
      code: 1,
      stdout: '',
      stderr: `Migration on-aws on this target is run by the AWS execution ${RUN} (phase schema): stop it with: pgferry stop ${RUN}\n`,
    });
    expect(await slotCount('pgferry_on_aws')).toBe(1);
    const [phase] = await cluster.sql("SELECT phase FROM pgferry.migrations WHERE name = 'on-aws'", 'aws_run_target');
    expect(phase!.rows[0].phase).toBe('schema');
  });
});

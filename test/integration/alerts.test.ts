/**
 * The per-migration alert topic (issue 15, item 4) against a real cluster: each condition (lag,
 * pause, failure, retained WAL) is alerted once per episode through the local sink (what a
 * local run prints) and recorded as an event, lag and retained WAL again with a resolved message
 * once back under their threshold; no secret from a cause reaches an alert.
 */
import type pg from 'pg';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { checkRetainedWal } from '../../engine/cdc/retained-wal.js';
import { replicationNames } from '../../engine/cdc/slot.js';
import { readAlerts } from '../../engine/control/alerts.js';
import { writeHeartbeat } from '../../engine/control/checkpoint.js';
import { beginMigration, ensureControlSchema, registerReplication, setPhase, takeOverRun } from '../../engine/control/index.js';
import { parseSpec, type MigrationSpec } from '../../engine/spec/index.js';
import { cleanupStep } from '../../engine/steps/cleanup.js';
import { replicationStatusStep } from '../../engine/steps/replication-status.js';
import { retainedWalCheckOf } from '../../engine/steps/retained-wal.js';
import { startClusters, type LocalCluster } from '../../local/dev/cluster.js';
import { localAlertSink, setLocalAlertPrinter } from '../../platform/alerts.js';
import { DefaultSecretsProvider } from '../../platform/secrets/index.js';
import { scratchDir } from '../support/clusters.js';
import { waitFor } from '../support/wait.js';

let cluster: LocalCluster;
const scratch = scratchDir('alerts');
const secrets = new DefaultSecretsProvider();
const TOPIC = 'arn:aws:sns:eu-west-1:123456789012:shop-alerts';
const RUN_1 = 'arn:aws:states:eu-west-1:123456789012:execution:pgferry:run-1';
const RUN_2 = 'arn:aws:states:eu-west-1:123456789012:execution:pgferry:run-2';

beforeAll(async () => {
  [cluster] = await startClusters([{ major: 17, label: 'alerts' }]);
});

afterAll(async () => {
  await cluster?.stop();
  scratch.remove();
});

/** What the local sink printed, one entry per alert. */
let printed: string[] = [];
let restorePrinter: () => void;
beforeEach(() => {
  printed = [];
  restorePrinter = setLocalAlertPrinter((line) => printed.push(line));
});
afterEach(() => restorePrinter());

const headlines = () => printed.map((line) => line.split('\n')[0]!);

/** A registered run of `name` (databases `db` and `db`_target) that `execution` began, and a session on its target. */
async function registeredRun(db: string, name: string, execution: string, spec: Record<string, unknown>): Promise<{ spec: MigrationSpec; control: pg.Client }> {
  await cluster.sql(`CREATE DATABASE ${db}`);
  await cluster.sql(`CREATE DATABASE ${db}_target`);
  const parsed = parseSpec({
    name,
    source: { secret: scratch.secretFor(`${db}-source`, cluster), database: db },
    target: { secret: scratch.secretFor(`${db}-target`, cluster), database: `${db}_target` },
    ...spec,
  });
  const control = await cluster.connect(`${db}_target`);
  control.on('error', () => undefined);
  await ensureControlSchema(control);
  await beginMigration(control, name, parsed, execution);
  return { spec: parsed, control };
}

async function alertEvents(control: pg.Client, name: string): Promise<string[]> {
  const { rows } = await control.query<{ message: string }>("SELECT message FROM pgferry.events WHERE migration = $1 AND message LIKE 'alert %' ORDER BY id", [name]);
  return rows.map((row) => row.message);
}

describe('the per-migration alert topic', () => {
  it('alerts lag over alerts.lagThresholdSeconds once per episode, with a resolved message when it is back under', async () => {
    const { spec, control } = await registeredRun('lag', 'shop-lag', RUN_1, { mode: 'full+cdc', alerts: { snsTopicArn: TOPIC, lagThresholdSeconds: 10 } });
    try {
      await registerReplication(control, spec.name, { ...replicationNames(spec), consistentLsn: '0/1000000' });
      await setPhase(control, spec.name, 'replicate');
      const beat = (lagSeconds: number) =>
        writeHeartbeat(control, spec.name, { receivedLsn: '0/2000000', processedLsn: '0/2000000', sourceLsn: '0/3000000', lagBytes: 16_777_216n, lagSeconds, rowsPerSecond: 100 });
      // Each call is a ReplicationStatus invocation (a turn of the workflow's loop); the second one also looks again while it waits.
      const status = (waitUpToSeconds = 0) => replicationStatusStep(spec, secrets, { alertSink: localAlertSink, waitUpToSeconds });

      await beat(30);
      await status();
      await status(3);
      await status();
      expect(headlines()).toEqual([`Alert (lag, for ${TOPIC}): pgferry shop-lag: replication lag 30 s, over 10 s`]);
      expect(printed[0]).toContain('above alerts.lagThresholdSeconds (10 s)');
      expect(printed[0]).toContain('16.0 MB of WAL not yet applied');

      await beat(2);
      await status();
      await status();
      await beat(45);
      await status();
      await status();
      expect(headlines()).toEqual([
        `Alert (lag, for ${TOPIC}): pgferry shop-lag: replication lag 30 s, over 10 s`,
        `Resolved (lag, for ${TOPIC}): pgferry shop-lag: replication lag back under 10 s`,
        `Alert (lag, for ${TOPIC}): pgferry shop-lag: replication lag 45 s, over 10 s`,
      ]);
      expect(await alertEvents(control, spec.name)).toHaveLength(3);
      expect(await readAlerts(control, spec.name)).toMatchObject([{ kind: 'lag', active: true, subject: 'pgferry shop-lag: replication lag 45 s, over 10 s' }]);
    } finally {
      await control.end();
    }
  });

  it('alerts a pause once per execution that paused, without the secret its cause held', async () => {
    const { spec, control } = await registeredRun('pause', 'shop-pause', RUN_1, { mode: 'full+cdc', alerts: { snsTopicArn: TOPIC } });
    try {
      await registerReplication(control, spec.name, { ...replicationNames(spec), consistentLsn: '0/1000000' });
      await setPhase(control, spec.name, 'replicate');
      const cause = 'could not reach postgres://app:hunter2@db.internal:5432/shop (password=hunter2)';
      // The workflow's Cleanup state, then the rule on the execution's end: one pause, one alert.
      await cleanupStep(spec, secrets, { Error: 'pgferry.ConnectionFailed', Cause: cause }, RUN_1, { alertSink: localAlertSink });
      await cleanupStep(spec, secrets, { Error: 'pgferry.ExecutionFailed', Cause: `The execution ${RUN_1} ended FAILED.` }, RUN_1, { alertSink: localAlertSink });
      expect(headlines()).toEqual([`Alert (pause, for ${TOPIC}): pgferry shop-pause: migration paused (pgferry.ConnectionFailed)`]);
      expect(printed[0]).toContain('paused in phase replicate');
      expect(printed[0]).toContain('pgferry resume SPEC');
      expect(printed[0]).not.toContain('hunter2');

      // Resumed by another execution, which pauses again: a new episode.
      await takeOverRun(control, spec.name, spec, RUN_2);
      await setPhase(control, spec.name, 'replicate');
      await cleanupStep(spec, secrets, { Error: 'pgferry.ConnectionFailed', Cause: 'the target is unreachable' }, RUN_2, { alertSink: localAlertSink });
      expect(headlines()).toHaveLength(2);
      expect(await alertEvents(control, spec.name)).toHaveLength(2);
      expect((await alertEvents(control, spec.name)).join('\n')).not.toContain('hunter2');
    } finally {
      await control.end();
    }
  });

  it('alerts a failure once per run, and nothing without a topic', async () => {
    const { spec, control } = await registeredRun('failure', 'shop-failure', RUN_1, { mode: 'full', alerts: { snsTopicArn: TOPIC } });
    try {
      await setPhase(control, spec.name, 'load');
      await cleanupStep(spec, secrets, { Error: 'pgferry.CopyFailed', Cause: 'unit 3 of public.orders failed: disk full' }, RUN_1, { alertSink: localAlertSink });
      await cleanupStep(spec, secrets, { Error: 'pgferry.ExecutionFailed', Cause: 'ended FAILED' }, RUN_1, { alertSink: localAlertSink });
      expect(headlines()).toEqual([`Alert (failure, for ${TOPIC}): pgferry shop-failure: migration failed (pgferry.CopyFailed)`]);
      expect(printed[0]).toContain('failed in phase load: pgferry.CopyFailed: unit 3 of public.orders failed: disk full');

      // The next run of the name fails too: alerted again.
      await beginMigration(control, spec.name, spec, RUN_2);
      await cleanupStep(spec, secrets, { Error: 'pgferry.CopyFailed', Cause: 'again' }, RUN_2, { alertSink: localAlertSink });
      expect(headlines()).toHaveLength(2);

      const silent = { ...spec, alerts: { lagThresholdSeconds: 300 } };
      await beginMigration(control, spec.name, silent, 'run-3');
      await cleanupStep(silent, secrets, { Error: 'pgferry.CopyFailed', Cause: 'again' }, 'run-3', { alertSink: localAlertSink });
      expect(headlines()).toHaveLength(2);
      expect(await readAlerts(control, spec.name)).toEqual([]);
    } finally {
      await control.end();
    }
  });

  it('alerts the failure of an execution that never registered its run once, from the workflow\'s Cleanup state', async () => {
    await cluster.sql('CREATE DATABASE early');
    await cluster.sql('CREATE DATABASE early_target');
    const spec = parseSpec({
      name: 'shop-early',
      mode: 'full+cdc',
      source: { secret: scratch.secretFor('early-source', cluster), database: 'early' },
      target: { secret: scratch.secretFor('early-target', cluster), database: 'early_target' },
      alerts: { snsTopicArn: TOPIC },
    });
    const failure = { Error: 'pgferry.PrecheckFailed', Cause: 'source.wal_level: wal_level is replica, logical replication needs logical' };
    // The Cleanup state, then the rule on the execution's end (which does not alert it again), then a stopped one.
    const cleanup = await cleanupStep(spec, secrets, failure, RUN_1, { alertSink: localAlertSink, alertUnregistered: true });
    await cleanupStep(spec, secrets, { Error: 'pgferry.ExecutionFailed', Cause: 'ended FAILED' }, RUN_1, { alertSink: localAlertSink });
    await cleanupStep(spec, secrets, { Error: 'pgferry.Stopped', Cause: 'Stopped with pgferry stop' }, RUN_2, { alertSink: localAlertSink, alertUnregistered: true });
    expect(cleanup.cleaned).toBe(false);
    expect(headlines()).toEqual([`Alert (failure, for ${TOPIC}): pgferry shop-early: migration failed (pgferry.PrecheckFailed)`]);
    expect(printed[0]).toContain('failed before its run registered on the target');
    expect(printed[0]).toContain('wal_level is replica');
  });

  it('alerts retained WAL over cdc.maxRetainedWal once, and resolves it once the slot is read', async () => {
    const { spec, control } = await registeredRun('wal', 'shop-wal', RUN_1, { mode: 'full+cdc', cdc: { maxRetainedWal: '1MB' }, alerts: { snsTopicArn: TOPIC } });
    const source = await cluster.connect('wal');
    source.on('error', () => undefined);
    try {
      await registerReplication(control, spec.name, { ...replicationNames(spec), consistentLsn: null });
      const { slotName } = replicationNames(spec);
      await source.query("SELECT pg_create_logical_replication_slot($1, 'pgoutput')", [slotName]);
      await source.query('CREATE TABLE filler (id int, pad text)');
      await source.query("INSERT INTO filler SELECT g, repeat('x', 500) FROM generate_series(1, 10000) g");
      // One check per measurement of the heartbeat or the paused loop, each a new check as PausedStatus makes it.
      const measure = () => checkRetainedWal(source, control, retainedWalCheckOf({ migration: spec.name, spec, alertSink: localAlertSink }));
      expect((await measure()).state).toBe('over');
      await measure();
      await measure();
      expect(headlines()).toHaveLength(1);
      expect(headlines()[0]).toMatch(new RegExp(`^Alert \\(retained-wal, for ${TOPIC}\\): pgferry shop-wal: replication slot holds \\d+(\\.\\d+)? MB of WAL$`));
      expect(printed[0]).toContain('above cdc.maxRetainedWal (1.0 MB)');

      await waitFor('the slot to be read past the filler', async () => {
        await source.query('CHECKPOINT');
        await source.query('SELECT pg_replication_slot_advance($1, pg_current_wal_lsn())', [slotName]);
        return (await measure()).state === 'ok';
      });
      await measure();
      expect(headlines()).toEqual([expect.stringMatching(/^Alert \(retained-wal/), `Resolved (retained-wal, for ${TOPIC}): pgferry shop-wal: retained WAL back under its threshold`]);
      expect(await alertEvents(control, spec.name)).toHaveLength(2);
    } finally {
      await source.query('SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE database = current_database()').catch(() => undefined);
      await source.end();
      await control.end();
    }
  });
});

/**
 * Who measures the slot's retained WAL: the replicate task while it holds the snapshot for the
 * load (StartReplication), against real clusters. The streamer's heartbeat is tested in
 * replicator.test.ts.
 */
import type pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RetainedWalExceededError, type RetainedWalReading } from '../../engine/cdc/retained-wal.js';
import { slotState } from '../../engine/cdc/slot.js';
import { connectSide } from '../../engine/connect/index.js';
import { beginMigration, ensureControlSchema, migrationState, readReplicationStatus, readRetainedWal, requestApply, setPhase } from '../../engine/control/index.js';
import { parseSpec } from '../../engine/spec/index.js';
import { readMigrationStatus } from '../../engine/status.js';
import { formatStatus } from '../../bin/format.js';
import { startReplicationStep } from '../../engine/steps/start-replication.js';
import type { CallbackStepContext } from '../../engine/steps/task.js';
import { startClusters, type LocalCluster } from '../../local/dev/cluster.js';
import { DefaultSecretsProvider } from '../../platform/secrets/index.js';
import { scratchDir } from '../support/clusters.js';
import { waitFor } from '../support/wait.js';

let source: LocalCluster;
let target: LocalCluster;
const scratch = scratchDir('retained-wal-steps');
const secrets = new DefaultSecretsProvider();

beforeAll(async () => {
  [source, target] = await startClusters([
    { major: 17, label: 'wal-steps-source' },
    { major: 17, label: 'wal-steps-target' },
  ]);
});

afterAll(async () => {
  await Promise.all([source, target].map((c) => c?.stop()));
  scratch.remove();
});

const TABLE = 'CREATE TABLE items (id int PRIMARY KEY, pad text)';

/**
 * A full+cdc migration and its replicate step running: holding the snapshot for a load that has
 * not started (phase schema), or (`streaming`) past the load, with apply requested, streaming.
 */
async function startHolding(db: string, cdc: Record<string, unknown>, { streaming = false } = {}) {
  await source.sql(`CREATE DATABASE ${db}`);
  await target.sql(`CREATE DATABASE ${db}`);
  await source.sql(TABLE, db);
  await target.sql(TABLE, db);
  const spec = parseSpec({
    name: `wal-${db}`,
    mode: 'full+cdc',
    source: { secret: scratch.secretFor(`${db}-source`, source), database: db },
    target: { secret: scratch.secretFor(`${db}-target`, target), database: db },
    cdc,
  });
  const control = await target.connect(db);
  await ensureControlSchema(control);
  await beginMigration(control, spec.name, spec);
  if (streaming) await setPhase(control, spec.name, 'replicate');
  const src = await source.connect(db);
  const logs: string[] = [];
  const context: CallbackStepContext = {
    migration: spec.name,
    spec,
    connectSource: () => connectSide('source', spec.source, secrets),
    connectTarget: () => connectSide('target', spec.target, secrets),
    log: (line) => logs.push(line),
    callback: { success: async () => undefined, reportFailure: async () => undefined },
    gone: new AbortController().signal,
  };
  const stop = new AbortController();
  const readings: RetainedWalReading[] = [];
  const step = startReplicationStep(context, { signal: stop.signal, secrets, onRetainedWal: (r) => readings.push(r), retainedWalIntervalMs: 100 });
  const ended = step.then(
    () => undefined,
    (error: unknown) => error,
  );
  const slotName = `pgferry_wal_${db}`;
  await waitFor('the slot and its registration', async () => (await slotState(src, slotName)).exists && (await readReplicationStatus(control, spec.name)));
  if (streaming) {
    await requestApply(control, spec.name);
    await waitFor('streaming', async () => (await readReplicationStatus(control, spec.name))?.streamingSince);
  }
  const writeWal = async () => {
    await src.query("INSERT INTO items SELECT g, repeat('x', 200) FROM generate_series(1, 5000) g ON CONFLICT DO NOTHING");
    await src.query('SELECT pg_switch_wal()');
  };
  const end = async () => {
    stop.abort();
    await ended;
    await src.query('SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = $1', [slotName]).catch(() => undefined);
    await Promise.all([control.end(), src.end()]);
  };
  return { spec, control, src, slotName, readings, ended, writeWal, end, logs };
}

const events = async (control: pg.Client, migration: string) =>
  (await control.query<{ level: string; message: string }>('SELECT level, message FROM pgferry.events WHERE migration = $1 ORDER BY id', [migration])).rows;

describe('the retained WAL while the replicate task holds the snapshot for the load', () => {
  it('is measured, recorded and reported; crossing cdc.maxRetainedWal records one warning and keeps the slot', async () => {
    const run = await startHolding('kept', { maxRetainedWal: '1MB' });
    try {
      await waitFor('a first measurement', async () => (await readRetainedWal(run.control, run.spec.name))?.state === 'ok');
      await run.writeWal();
      const over = await waitFor('the threshold crossed', async () => {
        const wal = await readRetainedWal(run.control, run.spec.name);
        return wal?.state === 'over' && wal;
      });
      expect(over.bytes).toBeGreaterThan(1024 ** 2);
      expect(over.thresholdBytes).toBe(1024 ** 2);
      expect(run.readings.some((r) => r.state === 'over')).toBe(true);
      expect(formatStatus((await readMigrationStatus(run.control, run.spec.name))!)).toContain('! over cdc.maxRetainedWal (1.0 MB)');
      const [warning, ...more] = await events(run.control, run.spec.name);
      expect(more).toEqual([]);
      expect(warning).toMatchObject({ level: 'warn' });
      expect(warning!.message).toContain(`Replication slot ${run.slotName} holds back`);
      expect(warning!.message).toContain('above cdc.maxRetainedWal (1.0 MB)');
      // Dropping is never the default: the slot and the snapshot holder are still there.
      expect((await slotState(run.src, run.slotName)).exists).toBe(true);
      expect((await migrationState(run.control, run.spec.name))?.phase).toBe('schema');
    } finally {
      await run.end();
    }
  });

  it('with cdc.dropSlotAboveMaxRetainedWal, fails the migration and drops the slot and publication, saying why', async () => {
    const run = await startHolding('dropped', { maxRetainedWal: '1MB', dropSlotAboveMaxRetainedWal: true });
    try {
      await run.writeWal();
      const error = await run.ended;
      expect(error).toBeInstanceOf(RetainedWalExceededError);
      expect((error as Error).message).toContain(`Replication slot ${run.slotName} held back`);
      expect((error as Error).message).toContain('the migration failed and the slot was dropped');
      expect((await slotState(run.src, run.slotName)).exists).toBe(false);
      expect((await run.src.query('SELECT 1 FROM pg_publication WHERE pubname = $1', [run.slotName])).rowCount).toBe(0);
      expect(await migrationState(run.control, run.spec.name)).toMatchObject({ phase: 'failed', error: (error as Error).message });
      expect((await readReplicationStatus(run.control, run.spec.name))?.lastError).toBe((error as Error).message);
      expect((await events(run.control, run.spec.name)).map((e) => e.level)).toEqual(['warn', 'error']);
    } finally {
      await run.end();
    }
  });
});

describe('the retained WAL while the streamer applies (its heartbeat measures it)', () => {
  /** Holds the applier on a lock, so the slot cannot confirm what it has received and keeps its WAL. */
  const blockApplier = async (db: string) => {
    const blocker = await target.connect(db);
    await blocker.query('BEGIN; LOCK TABLE items IN ACCESS EXCLUSIVE MODE');
    return async () => {
      await blocker.query('COMMIT');
      await blocker.end();
    };
  };

  it('records it and one warning past cdc.maxRetainedWal, and replication goes on', async () => {
    const run = await startHolding('streamed', { maxRetainedWal: '1MB' }, { streaming: true });
    try {
      const unblock = await blockApplier('streamed');
      await run.writeWal();
      await waitFor('the threshold crossed', async () => (await readRetainedWal(run.control, run.spec.name))?.state === 'over');
      expect((await events(run.control, run.spec.name)).map((e) => e.level)).toEqual(['warn']);
      await unblock();
      await waitFor('the rows applied', async () => (await run.control.query('SELECT count(*)::int AS n FROM items')).rows[0].n === 5000);
      expect((await readReplicationStatus(run.control, run.spec.name))?.lastError).toBeNull();
      expect((await slotState(run.src, run.slotName)).exists).toBe(true);
    } finally {
      await run.end();
    }
  });

  it('with cdc.dropSlotAboveMaxRetainedWal, stops streaming, drops the slot and fails the migration', async () => {
    const run = await startHolding('streamdrop', { maxRetainedWal: '1MB', dropSlotAboveMaxRetainedWal: true }, { streaming: true });
    try {
      const unblock = await blockApplier('streamdrop');
      await run.writeWal();
      await waitFor('the threshold crossed', async () => (await readRetainedWal(run.control, run.spec.name))?.state === 'over');
      // Let the blocked batch end (the streamer rolls it back as it stops).
      await unblock();
      const error = await run.ended;
      expect(error).toBeInstanceOf(RetainedWalExceededError);
      expect((await slotState(run.src, run.slotName)).exists).toBe(false);
      expect(await migrationState(run.control, run.spec.name)).toMatchObject({ phase: 'failed', error: (error as Error).message });
    } finally {
      await run.end();
    }
  });
});

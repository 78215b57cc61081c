import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  checkRetainedWal,
  dropSlotOverRetainedWal,
  measureRetainedWal,
  RetainedWalExceededError,
  SlotLostError,
  type RetainedWalReading,
} from '../../engine/cdc/retained-wal.js';
import { runReplicator } from '../../engine/cdc/replicator.js';
import { ensurePublication, slotState } from '../../engine/cdc/slot.js';
import { beginMigration, ensureControlSchema, migrationState, readRetainedWal, registerReplication } from '../../engine/control/index.js';
import { startClusters, type LocalCluster } from '../../local/dev/cluster.js';
import { clientConfig } from '../support/clusters.js';

const majors = [13, 15, 17, 18] as const;
type Major = (typeof majors)[number];
const clusters = new Map<Major, LocalCluster>();
const MB = 1024 ** 2;

beforeAll(async () => {
  const started = await startClusters(majors.map((major) => ({ major, label: 'retained-wal', settings: { autovacuum: 'off' } })));
  started.forEach((cluster, i) => clusters.set(majors[i]!, cluster));
  await Promise.all(started.map((cluster) => cluster.sql('CREATE TABLE filler (n int, pad text)')));
});

afterAll(async () => {
  await Promise.all([...clusters.values()].map((cluster) => cluster.stop()));
});

/** Writes some WAL and ends the segment, so a slot created before holds back at least that much. */
async function writeWal(client: pg.Client, rounds = 1): Promise<void> {
  for (let i = 0; i < rounds; i++) {
    await client.query("INSERT INTO filler SELECT g, repeat('x', 100) FROM generate_series(1, 2000) g");
    await client.query('SELECT pg_switch_wal()');
  }
}

async function setKeepSize(client: pg.Client, value: string): Promise<void> {
  await client.query(`ALTER SYSTEM SET max_slot_wal_keep_size = '${value}'`);
  await client.query('SELECT pg_reload_conf()');
  // The reload is asynchronous: wait until this session sees the new value.
  for (let i = 0; i < 100; i++) {
    const { rows } = await client.query("SELECT current_setting('max_slot_wal_keep_size') AS v");
    if (rows[0].v === value) return;
    await client.query('SELECT pg_sleep(0.05)');
  }
  throw new Error(`max_slot_wal_keep_size did not become ${value}`);
}

/** A migration registered on the cluster's own control schema, streaming from `slotName`. */
async function registerMigration(client: pg.Client, migration: string, slotName: string): Promise<void> {
  await ensureControlSchema(client);
  await beginMigration(client, migration, { mode: 'full+cdc' });
  await registerReplication(client, migration, { slotName, publicationName: slotName, consistentLsn: null });
}

const events = async (client: pg.Client, migration: string) =>
  (await client.query<{ level: string; message: string }>('SELECT level, message FROM pgferry.events WHERE migration = $1 ORDER BY id', [migration])).rows;

describe.each(majors)('PostgreSQL %i', (major) => {
  let client: pg.Client;
  beforeAll(async () => {
    client = await clusters.get(major)!.connect();
  });
  afterAll(async () => {
    await setKeepSize(client, '-1').catch(() => undefined);
    await client.end();
  });

  it('measures the WAL a slot holds back, and its share of max_slot_wal_keep_size when that is set', async () => {
    await client.query("SELECT pg_create_logical_replication_slot('measured', 'pgoutput')");
    await writeWal(client, 2);
    const unlimited = await measureRetainedWal(client, 'measured');
    const { rows } = await client.query<{ bytes: number }>(
      "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn)::float8 AS bytes FROM pg_replication_slots WHERE slot_name = 'measured'",
    );
    expect(unlimited).toMatchObject({ slotName: 'measured', exists: true, walStatus: 'reserved', lost: false, invalidationReason: null });
    expect(unlimited.bytes).toBeGreaterThan(16 * MB); // two segments were switched since the slot was created
    expect(unlimited.bytes).toBeLessThanOrEqual(rows[0]!.bytes);
    expect(unlimited).toMatchObject({ maxSlotWalKeepSizeBytes: null, keepSizeShare: null, safeWalSizeBytes: null });

    await setKeepSize(client, '1GB');
    const limited = await measureRetainedWal(client, 'measured');
    expect(limited.maxSlotWalKeepSizeBytes).toBe(1024 * MB);
    expect(limited.keepSizeShare).toBeCloseTo(limited.bytes! / (1024 * MB), 6);
    expect(limited.keepSizeShare).toBeGreaterThan(0);
    expect(limited.safeWalSizeBytes).toBeGreaterThan(0);
    await setKeepSize(client, '-1');
    await client.query("SELECT pg_drop_replication_slot('measured')");
  });

  it('records the measurement, and one event when the threshold is crossed (again only after it was back under)', async () => {
    const migration = `wal-threshold-${major}`;
    await client.query("SELECT pg_create_logical_replication_slot('threshold', 'pgoutput')");
    await registerMigration(client, migration, 'threshold');
    await writeWal(client);
    const readings: RetainedWalReading[] = [];
    const check = { migration, slotName: 'threshold', maxRetainedWalBytes: 1024, dropSlotAboveMaxRetainedWal: false, onReading: (r: RetainedWalReading) => readings.push(r) };

    const first = await checkRetainedWal(client, client, check);
    expect(first.state).toBe('over');
    await writeWal(client);
    expect((await checkRetainedWal(client, client, check)).state).toBe('over');
    const warnings = await events(client, migration);
    expect(warnings).toHaveLength(1);
    expect(warnings[0]!.level).toBe('warn');
    expect(warnings[0]!.message).toContain('Replication slot threshold holds back');
    expect(warnings[0]!.message).toContain('above cdc.maxRetainedWal (1.0 kB)');
    expect(warnings[0]!.message).toContain('pgferry stop SPEC --drop');
    expect(readings.map((r) => r.state)).toEqual(['over', 'over']);

    const recorded = await readRetainedWal(client, migration);
    expect(recorded).toMatchObject({ state: 'over', thresholdBytes: 1024, walStatus: 'reserved', invalidationReason: null });
    expect(recorded!.bytes).toBeGreaterThan(first.bytes!);
    expect(recorded!.peakBytes).toBe(recorded!.bytes);

    // Under a larger threshold it is fine, and the peak stays; crossing again is a new event.
    const under = await checkRetainedWal(client, client, { ...check, maxRetainedWalBytes: 1024 ** 4 });
    expect(under.state).toBe('ok');
    // The server writes WAL of its own meanwhile: the peak is the largest reading, never less than before.
    expect((await readRetainedWal(client, migration))!.peakBytes).toBe(Math.max(recorded!.peakBytes!, under.bytes!));
    await checkRetainedWal(client, client, check);
    expect(await events(client, migration)).toHaveLength(2);
    // Over, without the opt-in: the slot stays.
    expect((await slotState(client, 'threshold')).exists).toBe(true);
    await client.query("SELECT pg_drop_replication_slot('threshold')");
  });

  it('reports a slot invalidated by max_slot_wal_keep_size as lost, with an event saying a reload is needed', async () => {
    const migration = `wal-lost-${major}`;
    await client.query("SELECT pg_create_logical_replication_slot('pushed', 'pgoutput')");
    await registerMigration(client, migration, 'pushed');
    await setKeepSize(client, '1MB');
    await writeWal(client, 3);
    await client.query('CHECKPOINT');
    const lost = await measureRetainedWal(client, 'pushed');
    expect(lost).toMatchObject({ exists: true, walStatus: 'lost', lost: true, invalidationReason: 'wal_removed' });

    const reading = await checkRetainedWal(client, client, { migration, slotName: 'pushed', dropSlotAboveMaxRetainedWal: false });
    expect(reading.state).toBe('lost');
    const [event] = await events(client, migration);
    expect(event!.level).toBe('error');
    expect(event!.message).toContain('Replication slot pushed was invalidated by the source (wal_removed)');
    expect(event!.message).toContain('full reload is needed');
    expect((await readRetainedWal(client, migration))).toMatchObject({ state: 'lost', walStatus: 'lost', invalidationReason: 'wal_removed' });

    // A streamer does not retry a lost slot for the whole retry window: it says at once that a reload is needed.
    const cluster = clusters.get(major)!;
    const streaming = await runReplicator({
      migration,
      slotName: 'pushed',
      publicationName: 'pushed',
      conflictPolicy: 'error',
      batch: { maxRows: 1000, maxBytes: MB, maxDelayMs: 200 },
      retryWindowMs: 10 * 60_000,
      connectSource: () => cluster.connect(),
      connectTarget: () => cluster.connect(),
      streamConfig: async () => ({ ...clientConfig(cluster), replication: 'database' }) as pg.ClientConfig,
      log: () => undefined,
    }).then(
      () => undefined,
      (error: unknown) => error,
    );
    expect(streaming).toBeInstanceOf(SlotLostError);
    expect((streaming as Error).message).toContain('Replication slot pushed was invalidated by the source (wal_removed)');
    await setKeepSize(client, '-1');
    await client.query("SELECT pg_drop_replication_slot('pushed')");
  });

  it('reports a slot that no longer exists as lost (dropped)', async () => {
    expect(await measureRetainedWal(client, 'never_created')).toMatchObject({ exists: false, bytes: null, lost: true, invalidationReason: 'dropped' });
  });
});

describe('cdc.dropSlotAboveMaxRetainedWal', () => {
  it('above cdc.maxRetainedWal, fails the migration and drops the slot and publication, saying why', async () => {
    const client = await clusters.get(17)!.connect();
    try {
      const migration = 'wal-drop';
      await ensurePublication(client, { name: 'dropped_above', tables: [{ schema: 'public', name: 'filler' }] });
      await client.query("SELECT pg_create_logical_replication_slot('dropped_above', 'pgoutput')");
      await registerMigration(client, migration, 'dropped_above');
      await writeWal(client);
      const check = { migration, slotName: 'dropped_above', maxRetainedWalBytes: 1024, dropSlotAboveMaxRetainedWal: true };
      const error = await checkRetainedWal(client, client, check).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(error).toBeInstanceOf(RetainedWalExceededError);
      expect((error as Error).message).toContain('above cdc.maxRetainedWal (1.0 kB); as cdc.dropSlotAboveMaxRetainedWal asks, the migration failed and the slot was dropped');
      // Nothing was dropped yet: the caller stops using the slot first.
      expect((await slotState(client, 'dropped_above')).exists).toBe(true);

      await dropSlotOverRetainedWal(client, client, { migration, slotName: 'dropped_above', publicationName: 'dropped_above' }, error as RetainedWalExceededError);
      expect((await slotState(client, 'dropped_above')).exists).toBe(false);
      expect((await client.query("SELECT 1 FROM pg_publication WHERE pubname = 'dropped_above'")).rowCount).toBe(0);
      expect(await migrationState(client, migration)).toMatchObject({ phase: 'failed', error: (error as Error).message });
      expect((await events(client, migration)).map((e) => e.level)).toEqual(['warn', 'error']);
    } finally {
      await client.end();
    }
  });
});

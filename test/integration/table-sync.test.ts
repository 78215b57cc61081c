/**
 * Table sync (engine/cdc/table-sync.ts): a table copied at a snapshot of its own while the slot
 * streams from an earlier point ends identical, with no change applied twice and none lost.
 */
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runReplicator } from '../../engine/cdc/replicator.js';
import { createSlotWithSnapshot, dropSlotAndPublication, ensurePublication } from '../../engine/cdc/slot.js';
import { syncTables } from '../../engine/cdc/table-sync.js';
import { CANONICAL_STARTUP_OPTIONS } from '../../engine/connect/index.js';
import { beginMigration, ensureControlSchema, readTableSyncs, registerReplication, setDrainLsn } from '../../engine/control/index.js';
import { startClusters, type LocalCluster } from '../../local/dev/cluster.js';
import { clientConfig, replicationConnector } from '../support/clusters.js';
import { databaseHashes } from '../support/equality.js';

let source: LocalCluster;
let target: LocalCluster;

beforeAll(async () => {
  [source, target] = await startClusters([
    { major: 17, label: 'sync-source' },
    { major: 17, label: 'sync-target' },
  ]);
});

afterAll(async () => {
  await Promise.all([source, target].map((c) => c?.stop()));
});

describe('syncTables', () => {
  it('copies tables at a fresh snapshot and the stream applies their changes only from its start LSN: identical, nothing twice, nothing lost', async () => {
    const database = 'resync';
    const migration = 'sync-resync';
    const tables = 'CREATE TABLE synced (id int PRIMARY KEY, v text); CREATE TABLE streamed (id int PRIMARY KEY, v text); CREATE TABLE nokey (v text)';
    await source.sql(`CREATE DATABASE ${database}`);
    await target.sql(`CREATE DATABASE ${database}`);
    await source.sql(`${tables}; ALTER TABLE nokey REPLICA IDENTITY FULL`, database);
    await target.sql(tables, database);
    const control = await target.connect(database);
    const src = await source.connect(database);
    try {
      await ensureControlSchema(control);
      await beginMigration(control, migration, { mode: 'full+cdc' });
      const refs = ['synced', 'streamed', 'nokey'].map((name) => ({ schema: 'public', name }));
      await ensurePublication(src, { name: 'pgferry_resync', tables: refs });
      const holder = await createSlotWithSnapshot(replicationConnector(source, database), 'pgferry_resync');
      await holder.release();
      await registerReplication(control, migration, { slotName: 'pgferry_resync', publicationName: 'pgferry_resync', consistentLsn: holder.slot.consistentLsn });

      // Before the sync: streamed by the slot, and in the copy too.
      await src.query("INSERT INTO synced SELECT g, 'before ' || g FROM generate_series(1, 100) g");
      await src.query("INSERT INTO nokey SELECT 'before' FROM generate_series(1, 10)");
      await src.query("INSERT INTO streamed SELECT g, 'before ' || g FROM generate_series(1, 100) g");
      await src.query("UPDATE synced SET v = 'updated before' WHERE id <= 10");
      // The target's copies hold rows the sync replaces.
      await target.sql("INSERT INTO synced VALUES (9999, 'stale'); INSERT INTO nokey VALUES ('stale')", database);
      const starts = await syncTables(
        { migration, connectReplication: replicationConnector(source, database), connectSource: () => source.connect(database), target: control },
        [refs[0]!, refs[2]!],
      );
      expect([...starts.keys()]).toEqual(['public.synced', 'public.nokey']);
      expect(await readTableSyncs(control, migration)).toEqual(starts);
      // After the sync: only the stream has them.
      await src.query("INSERT INTO synced SELECT g, 'after ' || g FROM generate_series(101, 150) g");
      await src.query("UPDATE synced SET v = 'updated after' WHERE id BETWEEN 5 AND 15");
      await src.query('DELETE FROM synced WHERE id > 140');
      await src.query("INSERT INTO nokey VALUES ('after')");
      await src.query("UPDATE streamed SET v = 'after' WHERE id <= 20");
      const { rows } = await src.query<{ lsn: string }>('SELECT pg_current_wal_insert_lsn()::text AS lsn');
      await setDrainLsn(control, migration, rows[0]!.lsn);

      // The stream starts before the sync: without the filter, the rows before it would be inserted twice (a key conflict stops it).
      const end = await runReplicator({
        migration,
        slotName: 'pgferry_resync',
        publicationName: 'pgferry_resync',
        conflictPolicy: 'error',
        batch: { maxRows: 1000, maxBytes: 1 << 20, maxDelayMs: 200 },
        retryWindowMs: 60_000,
        heartbeatMs: 200,
        connectSource: () => source.connect(database),
        connectTarget: async () => {
          const client = new pg.Client(clientConfig(target, database));
          await client.connect();
          return client;
        },
        streamConfig: async () => ({ ...clientConfig(source, database), replication: 'database', options: CANONICAL_STARTUP_OPTIONS }) as pg.ClientConfig,
        log: () => undefined,
      });
      expect(end).toBe('drained');
      expect(await databaseHashes(target, database)).toEqual(await databaseHashes(source, database));
      // The temporary slot is gone with its connection.
      const [slots] = await source.sql("SELECT count(*)::int AS n FROM pg_replication_slots WHERE slot_name LIKE 'pgferry_sync_%'", database);
      expect(slots!.rows[0].n).toBe(0);
    } finally {
      await dropSlotAndPublication(src, { slotName: 'pgferry_resync', publicationName: 'pgferry_resync' }).catch(() => undefined);
      await Promise.all([control.end(), src.end()]);
    }
  });
});

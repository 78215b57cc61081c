import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  createSlotWithSnapshot,
  defaultSlotName,
  dropSlotAndPublication,
  ensurePublication,
  slotState,
  type SlotHolder,
} from '../../engine/cdc/slot.js';
import { importSnapshot } from '../../engine/snapshot.js';
import { startClusters, type LocalCluster } from '../../local/dev/cluster.js';
import { replicationConnector, withClient } from '../support/clusters.js';

const majors = [13, 17, 18] as const;
type Major = (typeof majors)[number];

/** synchronous_commit on: the SQL decoding functions read only up to the flushed WAL position. */
const SETTINGS = { autovacuum: 'off', synchronous_commit: 'on' };
/** PG 13 gets only two slots, so the exhausted case is cheap to reach. */
const SLOTS_13 = 2;

const clusters = new Map<Major, LocalCluster>();

const SETUP = `
  CREATE SCHEMA shop;
  CREATE TABLE shop.items (id int PRIMARY KEY, name text);
  CREATE TABLE shop."Odd Name" (id int PRIMARY KEY);
  CREATE TABLE shop.events (id int, at date, PRIMARY KEY (id, at)) PARTITION BY RANGE (at);
  CREATE TABLE shop.events_2024 PARTITION OF shop.events FOR VALUES FROM ('2024-01-01') TO ('2025-01-01');
  INSERT INTO shop.items VALUES (1, 'one'), (2, 'two');
`;



const slotCount = async (cluster: LocalCluster, name?: string) =>
  Number(
    (await withClient(cluster, (c) =>
      c.query<{ n: string }>('SELECT count(*) AS n FROM pg_replication_slots WHERE $1::text IS NULL OR slot_name = $1', [name ?? null]),
    )).rows[0]!.n,
  );

beforeAll(async () => {
  const started = await startClusters(
    majors.map((major) => ({ major, label: 'slot', settings: major === 13 ? { ...SETTINGS, max_replication_slots: SLOTS_13 } : SETTINGS })),
  );
  started.forEach((cluster, i) => clusters.set(majors[i]!, cluster));
  await Promise.all([...clusters.values()].map((cluster) => cluster.sql(SETUP)));
});

afterAll(async () => {
  await Promise.all([...clusters.values()].map((cluster) => cluster.stop()));
});

describe('defaultSlotName', () => {
  it('lower-cases, replaces other characters and caps the length at 63', () => {
    expect(defaultSlotName('Orders')).toBe('pgferry_orders');
    expect(defaultSlotName('shop-eu.2024 Q1')).toBe('pgferry_shop_eu_2024_q1');
    expect(defaultSlotName('ünïcode')).toBe('pgferry__n_code');
    const long = defaultSlotName('x'.repeat(100));
    expect(long).toHaveLength(63);
    expect(long).toBe(`pgferry_${'x'.repeat(55)}`);
  });
});

describe.each(majors)('PostgreSQL %i', (major) => {
  const cluster = () => clusters.get(major)!;

  it('ensurePublication creates, then updates tables and operations; partitioned tables publish via root', async () => {
    await withClient(cluster(), async (client) => {
      const tables = async () =>
        (await client.query<{ t: string }>(`SELECT schemaname || '.' || tablename AS t FROM pg_publication_tables WHERE pubname = 'pub' ORDER BY 1`)).rows.map((r) => r.t);
      const flags = async () =>
        (await client.query('SELECT pubinsert, pubupdate, pubdelete, pubtruncate, pubviaroot FROM pg_publication WHERE pubname = $1', ['pub'])).rows[0];

      expect(await ensurePublication(client, { name: 'pub', tables: [{ schema: 'shop', name: 'items' }] })).toBe('created');
      expect(await tables()).toEqual(['shop.items']);
      expect(await flags()).toEqual({ pubinsert: true, pubupdate: true, pubdelete: true, pubtruncate: true, pubviaroot: false });

      const spec = {
        name: 'pub',
        tables: [{ schema: 'shop', name: 'Odd Name' }, { schema: 'shop', name: 'events' }],
        operations: { truncate: false, delete: false },
      };
      expect(await ensurePublication(client, spec)).toBe('updated');
      // Via the root, the partitioned table itself is listed, not its leaf.
      expect(await tables()).toEqual(['shop.Odd Name', 'shop.events']);
      expect(await flags()).toEqual({ pubinsert: true, pubupdate: true, pubdelete: false, pubtruncate: false, pubviaroot: true });

      expect(await dropSlotAndPublication(client, { slotName: 'none', publicationName: 'pub' })).toEqual({ slotDropped: false, publicationDropped: true });
    });
  });

  it('creates the slot with an exported snapshot that meets the slot with no gap', async () => {
    const slotName = defaultSlotName(`Run-${major}`);
    await withClient(cluster(), async (client) => {
      await ensurePublication(client, { name: 'p', tables: [{ schema: 'shop', name: 'items' }] });
      const holder = await createSlotWithSnapshot(replicationConnector(cluster()), slotName);
      const { slot } = holder;
      expect(slot).toMatchObject({ slotName, plugin: 'pgoutput' });
      expect(slot.consistentLsn).toMatch(/^[0-9A-F]+\/[0-9A-F]+$/);

      const state = await slotState(client, slotName);
      expect(state.exists).toBe(true);
      // The creating walsender releases the slot; only the snapshot stays with the idle connection.
      expect(state.active).toBe(false);
      const lsn = (await client.query<{ confirmed: boolean; restart: boolean }>(
        'SELECT $1::pg_lsn = $2::pg_lsn AS confirmed, $3::pg_lsn <= $2::pg_lsn AS restart',
        [state.confirmedFlushLsn, slot.consistentLsn, state.restartLsn],
      )).rows[0]!;
      expect(lsn.confirmed || lsn.restart).toBe(true);

      await client.query(`INSERT INTO shop.items VALUES (3, 'after slot')`);

      const reader = await cluster().connect();
      try {
        await importSnapshot(reader, slot.snapshot);
        const ids = async () => (await reader.query<{ id: number }>('SELECT id FROM shop.items ORDER BY id')).rows.map((r) => r.id);
        expect(await ids()).toEqual([1, 2]);
        await reader.query('COMMIT');
        await importSnapshot(reader);
        expect(await ids()).toEqual([1, 2, 3]);
        await reader.query('COMMIT');

        await holder.release();
        await expect(importSnapshot(reader, slot.snapshot)).rejects.toMatchObject({ name: 'pgferry.SnapshotLost' });
      } finally {
        await reader.end();
      }

      const changes = await client.query<{ data: Buffer }>(
        `SELECT data FROM pg_logical_slot_peek_binary_changes($1, NULL, NULL, 'proto_version', '1', 'publication_names', 'p')`,
        [slotName],
      );
      const types = changes.rows.map((r) => String.fromCharCode(r.data[0]!));
      // Exactly the insert made after the slot: begin, relation, insert, commit.
      expect(types).toEqual(['B', 'R', 'I', 'C']);
      expect(changes.rows[2]!.data.includes(Buffer.from('after slot'))).toBe(true);

      expect(await dropSlotAndPublication(client, { slotName, publicationName: 'p' })).toEqual({ slotDropped: true, publicationDropped: true });
      expect(await dropSlotAndPublication(client, { slotName, publicationName: 'p' })).toEqual({ slotDropped: false, publicationDropped: false });
      expect(await slotState(client, slotName)).toEqual({ exists: false, active: false, confirmedFlushLsn: null, restartLsn: null });
      await client.query('DELETE FROM shop.items WHERE id = 3');
    });
  });

  it('reports an existing slot as pgferry.SlotExists and creates no second one', async () => {
    const slotName = 'dup_slot';
    const first = await createSlotWithSnapshot(replicationConnector(cluster()), slotName);
    try {
      const error = await createSlotWithSnapshot(replicationConnector(cluster()), slotName).catch((e: unknown) => e);
      expect(error).toMatchObject({ name: 'pgferry.SlotExists' });
      expect((error as Error).message).toContain(slotName);
      expect((error as Error).message).toContain('cdc.resumeSlot');
      expect(await slotCount(cluster(), slotName)).toBe(1);
    } finally {
      await first.release();
      await withClient(cluster(), (c) => dropSlotAndPublication(c, { slotName, publicationName: 'p' }));
    }
    expect(await slotCount(cluster(), slotName)).toBe(0);
  });

  it('drops the slot again when anything fails after its creation', async () => {
    const connector = async () => {
      const client = await replicationConnector(cluster())();
      const query = client.query.bind(client) as (text: string) => Promise<pg.QueryResult>;
      // Simulates a result that cannot be used: the slot exists on the server, the caller gets no holder.
      (client as unknown as { query: typeof query }).query = async (text: string) =>
        text.startsWith('CREATE_REPLICATION_SLOT') ? { ...(await query(text)), rows: [] } : query(text);
      return client;
    };
    await expect(createSlotWithSnapshot(connector, 'half_made')).rejects.toMatchObject({ name: 'pgferry.SlotFailed' });
    expect(await slotCount(cluster(), 'half_made')).toBe(0);
  });

  it('rejects a name the server would not accept, before connecting', async () => {
    let connected = false;
    const connector = async () => {
      connected = true;
      return replicationConnector(cluster())();
    };
    await expect(createSlotWithSnapshot(connector, 'Dup "slot"')).rejects.toMatchObject({ name: 'pgferry.SlotNameInvalid' });
    expect(connected).toBe(false);
  });

  it.runIf(major === 13)('reports exhausted max_replication_slots as pgferry.SlotsExhausted', async () => {
    const holders: SlotHolder[] = [];
    try {
      for (let i = 0; i < SLOTS_13; i++) holders.push(await createSlotWithSnapshot(replicationConnector(cluster()), `fill_${i}`));
      const error = await createSlotWithSnapshot(replicationConnector(cluster()), 'one_too_many').catch((e: unknown) => e);
      expect(error).toMatchObject({ name: 'pgferry.SlotsExhausted' });
      expect((error as Error).message).toContain('max_replication_slots');
    } finally {
      await Promise.all(holders.map((h) => h.release()));
      await withClient(cluster(), async (c) => {
        for (const h of holders) await dropSlotAndPublication(c, { slotName: h.slot.slotName, publicationName: 'none' });
      });
    }
    expect(await slotCount(cluster())).toBe(0);
  });

  it('drops a slot that a walsender is streaming from', async () => {
    const slotName = 'busy';
    await withClient(cluster(), async (client) => {
      await ensurePublication(client, { name: 'p', tables: [{ schema: 'shop', name: 'items' }] });
      const holder = await createSlotWithSnapshot(replicationConnector(cluster()), slotName);
      await holder.release();
      const streamer = await replicationConnector(cluster())();
      streamer.on('error', () => undefined);
      // pg does not speak CopyBoth: the query never settles, but the walsender holds the slot until terminated.
      const streaming = streamer.query(`START_REPLICATION SLOT "${slotName}" LOGICAL 0/0 (proto_version '1', publication_names 'p')`).catch(() => undefined);
      try {
        const deadline = Date.now() + 10_000;
        while (!(await slotState(client, slotName)).active && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
        expect((await slotState(client, slotName)).active).toBe(true);

        expect(await dropSlotAndPublication(client, { slotName, publicationName: 'p' })).toEqual({ slotDropped: true, publicationDropped: true });
        expect((await slotState(client, slotName)).exists).toBe(false);
      } finally {
        await streamer.end().catch(() => undefined);
        void streaming;
      }
    });
  });

  it('leaves no slot behind', async () => {
    expect(await slotCount(cluster())).toBe(0);
  });
});

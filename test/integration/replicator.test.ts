import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runReplicator, type ReplicatorEnd } from '../../engine/cdc/replicator.js';
import { createSlotWithSnapshot, ensurePublication, slotState } from '../../engine/cdc/slot.js';
import { beginMigration, ensureControlSchema, readLateChanges, readReplicationStatus, recordFence, registerReplication, setDrainLsn } from '../../engine/control/index.js';
import { markDrainPoint } from '../../engine/cutover/index.js';
import { parseLsn } from '../../engine/cdc/pgoutput.js';
import { startClusters, type LocalCluster } from '../../local/dev/cluster.js';
import { replicationConnector, replicatorConnections } from '../support/clusters.js';
import { databaseHashes } from '../support/equality.js';
import { sleep, waitFor } from '../support/wait.js';

let source: LocalCluster;
let target: LocalCluster;

const TABLES = `
  CREATE TABLE public.items (id int PRIMARY KEY, name text, at timestamptz);
  CREATE TABLE public.log (line text, n int);
  ALTER TABLE public.log REPLICA IDENTITY FULL;
  CREATE SCHEMA app;
  CREATE TABLE app.things (id int);
  CREATE TABLE public.refs (id int PRIMARY KEY, r regclass, t regtype[]);`;

beforeAll(async () => {
  // A short wal_sender_timeout makes the walsender send keepalives (and ask for replies) often.
  [source, target] = await startClusters([
    { major: 17, label: 'replicator-source', settings: { wal_sender_timeout: '2s' } },
    { major: 17, label: 'replicator-target' },
  ]);
});

afterAll(async () => {
  await Promise.all([source, target].map((c) => c?.stop()));
});


/** A database pair with a registered slot, and a replicator running on it. */
async function setUp(
  database: string,
  extra: { streamBlock?: string; operations?: Record<string, ('insert' | 'update' | 'delete' | 'truncate')[]>; sourceSearchPath?: string } = {},
) {
  const migration = `rep-${database}`;
  const slotName = `pgferry_${database}`;
  await source.sql(`CREATE DATABASE ${database}`);
  await target.sql(`CREATE DATABASE ${database}`);
  if (extra.sourceSearchPath) await source.sql(`ALTER DATABASE ${database} SET search_path = ${extra.sourceSearchPath}`);
  await source.sql(TABLES, database);
  await target.sql(TABLES, database);
  const control = await target.connect(database);
  await ensureControlSchema(control);
  await beginMigration(control, migration, { mode: 'full+cdc' });
  const src = await source.connect(database);
  await ensurePublication(src, {
    name: slotName,
    tables: ['items', 'log', 'refs'].map((name) => ({ schema: 'public', name })),
  });
  const holder = await createSlotWithSnapshot(replicationConnector(source, database), slotName);
  await holder.release();
  await registerReplication(control, migration, { slotName, publicationName: slotName, consistentLsn: holder.slot.consistentLsn });

  const stop = new AbortController();
  const logs: string[] = [];
  let ended: ReplicatorEnd | Error | undefined;
  /** A streamer of this migration (a restarted task starts another one). */
  const startReplicator = (log: string[], signal: AbortSignal) =>
    runReplicator({
    migration,
    slotName,
    publicationName: slotName,
    conflictPolicy: 'error',
    batch: { maxRows: 1000, maxBytes: 1 << 20, maxDelayMs: 200 },
    retryWindowMs: 60_000,
    heartbeatMs: 200,
    ...replicatorConnections(source, target, database),
    log: (line) => log.push(line),
    signal,
    ...(extra.streamBlock ? { streamBlock: extra.streamBlock } : {}),
    ...(extra.operations ? { operations: extra.operations } : {}),
  });
  const run = startReplicator(logs, stop.signal).then(
    (end) => (ended = end),
    (error: Error) => (ended = error),
  );
  const slot = () => slotState(src, slotName);
  const applied = async () => (await readReplicationStatus(control, migration))?.appliedLsn ?? '0/0';
  const stopAll = async () => {
    stop.abort();
    await run;
    // The walsender outlives the streamer's connection by a moment: a slot in use cannot be dropped.
    await waitFor('the walsender to release the slot', async () => {
      const { rows } = await src.query('SELECT NOT active AS released FROM pg_replication_slots WHERE slot_name = $1', [slotName]);
      return rows.length === 0 || rows[0].released;
    });
    await src.query('SELECT pg_drop_replication_slot($1) FROM pg_replication_slots WHERE slot_name = $1', [slotName]);
    await Promise.all([control.end(), src.end()]);
  };
  /** Drains to the source's current end of WAL: the run ends with everything so far applied. */
  const drain = async () => {
    const { rows } = await src.query<{ lsn: string }>('SELECT pg_current_wal_insert_lsn()::text AS lsn');
    await setDrainLsn(control, migration, rows[0]!.lsn);
    await run;
    expect(ended).toBe('drained');
  };
  return { migration, slotName, control, src, slot, applied, run, drain, stop: stopAll, logs, ended: () => ended, startReplicator };
}

async function expectSame(database: string) {
  expect(await databaseHashes(target, database)).toEqual(await databaseHashes(source, database));
}

describe('the CDC streamer + applier loop', () => {
  it('replicates reg* values by qualified name, whatever search_path the source database sets', async () => {
    const r = await setUp('regs', { sourceSearchPath: 'app, public' });
    try {
      await r.src.query(`INSERT INTO public.refs VALUES (1, 'app.things', '{app.things,int4}'), (2, 'public.items', NULL)`);
      await r.drain();
      const [refs] = await target.sql('SELECT id, r::text, t::text FROM refs ORDER BY id', 'regs');
      expect(refs!.rows).toEqual([
        { id: 1, r: 'app.things', t: '{app.things,integer}' },
        { id: 2, r: 'items', t: null },
      ]);
    } finally {
      await r.stop();
    }
  });

  it('never lets the slot confirm past what the target has committed, even across keepalives, then catches up', async () => {
    const r = await setUp('blocked');
    try {
      await r.src.query("INSERT INTO items VALUES (1, 'first', now())");
      await waitFor('the first row on the target', async () => (await r.control.query('SELECT 1 FROM items WHERE id = 1')).rowCount === 1);
      const held = await waitFor('an applied checkpoint', async () => (await r.applied()) !== '0/0' && r.applied());

      // Block the applier: it receives the changes but cannot commit them.
      const blocker = await target.connect('blocked');
      await blocker.query('BEGIN; LOCK TABLE items IN ACCESS EXCLUSIVE MODE');
      for (let i = 2; i <= 20; i++) await r.src.query('INSERT INTO items VALUES ($1, $2, now())', [i, `row ${i}`]);
      const { rows } = await r.src.query<{ lsn: string }>('SELECT pg_current_wal_insert_lsn()::text AS lsn');
      // Several keepalive rounds (wal_sender_timeout 2 s) while the changes wait.
      for (let i = 0; i < 20; i++) {
        const slot = await r.slot();
        expect(parseLsn(slot.confirmedFlushLsn!)).toBeLessThan(parseLsn(rows[0]!.lsn));
        expect(parseLsn(slot.confirmedFlushLsn!)).toBeLessThanOrEqual(parseLsn(await r.applied()));
        await sleep(250);
      }
      expect(await r.applied()).toBe(held);
      await blocker.query('COMMIT');
      await blocker.end();
      await waitFor('the slot to confirm the changes', async () => parseLsn((await r.slot()).confirmedFlushLsn!) >= parseLsn(rows[0]!.lsn));
      expect(parseLsn(await r.applied())).toBeGreaterThan(parseLsn(held as string));
      await expectSame('blocked');
      expect(r.ended()).toBeUndefined();
    } finally {
      await r.stop();
    }
  });

  it('resumes after its connections are killed, applying nothing twice, and ends once drained to the cutover LSN', async () => {
    const r = await setUp('resumed');
    try {
      for (let round = 0; round < 3; round++) {
        for (let i = 0; i < 20; i++) {
          const n = round * 100 + i;
          await r.src.query('BEGIN');
          await r.src.query('INSERT INTO items VALUES ($1, $2, now()) ON CONFLICT (id) DO UPDATE SET name = excluded.name', [n % 30, `v${n}`]);
          await r.src.query("INSERT INTO log VALUES ('same line', 1)"); // duplicates on purpose
          if (i % 5 === 0) await r.src.query("DELETE FROM log WHERE ctid = (SELECT ctid FROM log WHERE line = 'same line' LIMIT 1)");
          await r.src.query('COMMIT');
        }
        // Kill the walsender and the applier's target session in the middle of the stream.
        await r.src.query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'streamer'");
        await target.sql("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'applier'");
      }
      await r.drain();
      expect(r.logs.some((line) => line.startsWith('replication interrupted'))).toBe(true);
      await expectSame('resumed');
      const status = await readReplicationStatus(r.control, r.migration);
      expect(status?.drained).toBe(true);
    } finally {
      await r.stop();
    }
  });

  it('applies large transactions streamed while in progress, interleaved with small ones, and drops streamed ones that roll back', async () => {
    // 64kB blocks: every transaction below with more than a few hundred rows is streamed in progress.
    const r = await setUp('streamed', { streamBlock: '64kB' });
    try {
      await r.src.query("INSERT INTO items VALUES (0, 'seed', now())");
      await waitFor('streaming', async () => (await readReplicationStatus(r.control, r.migration))?.streamingSince);
      const big = await source.connect('streamed');
      const other = await source.connect('streamed');
      try {
        // A big transaction in progress, small ones committing in between, then the big one commits.
        await big.query('BEGIN');
        await big.query("INSERT INTO items SELECT g, repeat('x', 200), now() FROM generate_series(1000, 6000) g");
        await other.query("INSERT INTO items VALUES (1, 'small one', now())");
        await big.query("UPDATE items SET name = 'updated in the big one' WHERE id BETWEEN 1000 AND 3000");
        await other.query("UPDATE items SET name = 'small two' WHERE id = 1");
        await big.query("INSERT INTO log SELECT 'big ' || g, g FROM generate_series(1, 3000) g");
        await big.query('COMMIT');
        // A big transaction that rolls back after being streamed: nothing of it may arrive.
        await big.query('BEGIN');
        await big.query("INSERT INTO items SELECT g, repeat('y', 200), now() FROM generate_series(10000, 15000) g");
        await big.query('ROLLBACK');
        // Two big ones in progress at once, committing in the opposite order.
        await big.query('BEGIN');
        await other.query('BEGIN');
        await big.query("INSERT INTO items SELECT g, 'first', now() FROM generate_series(20000, 24000) g");
        await other.query("INSERT INTO items SELECT g, 'second', now() FROM generate_series(30000, 34000) g");
        await other.query('COMMIT');
        await big.query("DELETE FROM items WHERE id BETWEEN 1000 AND 1500");
        await big.query('COMMIT');
      } finally {
        await Promise.all([big.end(), other.end()]);
      }
      await r.drain();
      const [stats] = await source.sql("SELECT stream_txns FROM pg_stat_replication_slots WHERE slot_name = 'pgferry_streamed'", 'streamed');
      expect(Number(stats!.rows[0].stream_txns)).toBeGreaterThanOrEqual(3);
      expect(r.logs.filter((line) => line.includes('without streaming'))).toEqual([]);
      await expectSame('streamed');
    } finally {
      await r.stop();
    }
  });

  it('falls back to whole transactions when a streamed one rolls back a subtransaction, and still ends identical', async () => {
    const r = await setUp('subxact', { streamBlock: '64kB' });
    try {
      await r.src.query("INSERT INTO items VALUES (0, 'seed', now())");
      await waitFor('streaming', async () => (await readReplicationStatus(r.control, r.migration))?.streamingSince);
      await r.src.query(`BEGIN;
        INSERT INTO items SELECT g, repeat('a', 200), now() FROM generate_series(1000, 4000) g;
        SAVEPOINT s;
        INSERT INTO items SELECT g, repeat('b', 200), now() FROM generate_series(5000, 8000) g;
        ROLLBACK TO SAVEPOINT s;
        INSERT INTO items SELECT g, repeat('c', 200), now() FROM generate_series(9000, 12000) g;
        COMMIT`);
      await r.drain();
      expect(r.logs.some((line) => line.includes('a subtransaction of streamed transaction'))).toBe(true);
      await expectSame('subxact');
    } finally {
      await r.stop();
    }
  });

  it('fences out a replaced streamer: the older one stops at its next reconnect or checkpoint, and the newer one applies everything once', async () => {
    const r = await setUp('fenced');
    const newer = new AbortController();
    const newerLogs: string[] = [];
    try {
      for (let i = 0; i < 20; i++) await r.src.query('INSERT INTO items VALUES ($1, $2, now())', [i, `before ${i}`]);
      const { rows } = await r.src.query<{ lsn: string }>('SELECT pg_current_wal_insert_lsn()::text AS lsn');
      await waitFor('the first streamer to apply', async () => parseLsn(await r.applied()) >= parseLsn(rows[0]!.lsn));
      // A restarted task starts a second streamer while the first still runs (it was frozen, or cut off).
      const second = r.startReplicator(newerLogs, newer.signal).then(
        (end) => end,
        (error: Error) => error,
      );
      await r.run;
      expect(r.ended()).toMatchObject({ name: 'pgferry.StreamerFenced' });
      for (let i = 20; i < 40; i++) {
        await r.src.query('BEGIN');
        await r.src.query('INSERT INTO items VALUES ($1, $2, now())', [i, `after ${i}`]);
        await r.src.query("UPDATE items SET name = name || ' updated' WHERE id = $1", [i - 20]);
        await r.src.query("INSERT INTO log VALUES ('line', $1)", [i]);
        await r.src.query('COMMIT');
      }
      const { rows: end } = await r.src.query<{ lsn: string }>('SELECT pg_current_wal_insert_lsn()::text AS lsn');
      await setDrainLsn(r.control, r.migration, end[0]!.lsn);
      expect(await second).toBe('drained');
      await expectSame('fenced');
    } finally {
      newer.abort();
      await r.stop();
    }
  });

  it('applies only the operations a table is configured for', async () => {
    const r = await setUp('ops', { operations: { 'public.log': ['insert'] } });
    try {
      await r.src.query("INSERT INTO items VALUES (1, 'one', now()), (2, 'two', now())");
      await r.src.query("INSERT INTO log VALUES ('kept', 1), ('deleted on the source only', 2)");
      await r.src.query("DELETE FROM log WHERE n = 2");
      await r.src.query("UPDATE log SET line = 'changed on the source only'");
      await r.src.query('DELETE FROM items WHERE id = 2');
      await r.src.query('TRUNCATE log');
      await r.drain();
      const [items, log] = await target.sql('SELECT id FROM items ORDER BY id; SELECT line, n FROM log ORDER BY n', 'ops');
      expect(items!.rows).toEqual([{ id: 1 }]);
      expect(log!.rows).toEqual([
        { line: 'kept', n: 1 },
        { line: 'deleted on the source only', n: 2 },
      ]);
    } finally {
      await r.stop();
    }
  });

  it('behind a fence, reads on past the drain point: a replica-role write committed after it is applied and recorded, never dropped', async () => {
    const r = await setUp('pastfence');
    try {
      await r.src.query("INSERT INTO items VALUES (1, 'before', now())");
      await waitFor('the first row on the target', async () => (await r.control.query('SELECT 1 FROM items WHERE id = 1')).rowCount === 1);
      const drainLsn = await markDrainPoint(r.src);
      // After the drain point, a session the fence's triggers let through (replica role) writes.
      await source.sql("SET session_replication_role = replica; INSERT INTO items VALUES (2, 'past the fence', now()); UPDATE items SET name = 'changed' WHERE id = 1", 'pastfence');
      await recordFence(r.control, r.migration, true);
      await setDrainLsn(r.control, r.migration, drainLsn);
      await r.run;
      expect(r.ended()).toBe('drained');
      await expectSame('pastfence');
      const late = await readLateChanges(r.control, r.migration);
      expect(late).toEqual([{ commitLsn: expect.any(String), schema: 'public', table: 'items', rows: 2, keys: ['insert id=2', 'update id=1'] }]);
      expect(parseLsn(late[0]!.commitLsn)).toBeGreaterThan(parseLsn(drainLsn));
      const { rows: events } = await r.control.query("SELECT level, message FROM pgferry.events WHERE migration = $1 AND message LIKE '%past the fence%'", [r.migration]);
      expect(events).toEqual([{ level: 'warn', message: expect.stringContaining('public.items at ') }]);
    } finally {
      await r.stop();
    }
  });
});

/**
 * Schema changes during CDC (issue 12, item 5) on real clusters: captured on the source by the
 * event trigger, streamed in commit order with the data, applied on the target by the
 * replicator; cdc.ddl "pause"/"error", a statement that fails on the target, resuming, and
 * cleanup of the capture.
 */
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CAPTURE_TABLE, installDdlCapture, setUpDdlCapture } from '../../engine/cdc/ddl/capture.js';
import { runReplicator, type ReplicatorEnd } from '../../engine/cdc/replicator.js';
import { createSlotWithSnapshot, dropSlotAndPublication, ensurePublication } from '../../engine/cdc/slot.js';
import { beginMigration, ensureControlSchema, listDdlRecords, recordPostDataLsn, registerReplication, setDrainLsn } from '../../engine/control/index.js';
import { parseSpec } from '../../engine/spec/index.js';
import { startClusters, type LocalCluster } from '../../local/dev/cluster.js';
import { clientConfig, replicationConnector, replicatorConnections } from '../support/clusters.js';
import { databaseHashes, schemaFingerprint } from '../support/equality.js';
import { waitFor } from '../support/wait.js';

let source: LocalCluster;
let target: LocalCluster;

beforeAll(async () => {
  [source, target] = await startClusters([
    { major: 17, label: 'ddl-source' },
    { major: 17, label: 'ddl-target' },
  ]);
});

afterAll(async () => {
  await Promise.all([source, target].map((c) => c?.stop()));
});

const TABLES = `
  CREATE TABLE items (id int PRIMARY KEY, name text, qty int NOT NULL DEFAULT 0);
  CREATE TABLE log (line text, n int);
  ALTER TABLE log REPLICA IDENTITY FULL;`;

type Mode = 'replicate' | 'pause' | 'error';

/** A database pair with the capture installed, a slot, and a way to run the replicator on it (as a resumed run does). */
async function setUp(database: string) {
  const migration = `ddl-${database}`;
  const slotName = `pgferry_${database}`;
  await source.sql(`CREATE DATABASE ${database}`);
  await target.sql(`CREATE DATABASE ${database}`);
  await source.sql(TABLES, database);
  await target.sql(TABLES, database);
  const control = await target.connect(database);
  await ensureControlSchema(control);
  await beginMigration(control, migration, { mode: 'full+cdc' });
  const src = await source.connect(database);
  const selection = parseSpec({ name: migration, source: { secret: 'env:S' }, target: { secret: 'env:T' }, objects: { include: [{ schema: 'public' }] } }).objects;
  await installDdlCapture(src, slotName, selection);
  await ensurePublication(src, { name: slotName, tables: [{ schema: 'public', name: 'items' }, { schema: 'public', name: 'log' }, CAPTURE_TABLE] });
  const holder = await createSlotWithSnapshot(replicationConnector(source, database), slotName);
  await holder.release();
  await registerReplication(control, migration, { slotName, publicationName: slotName, consistentLsn: holder.slot.consistentLsn });

  const logs: string[] = [];
  /** Runs the replicator until it ends (drained, or an error): a resumed run is just another call. */
  const run = (mode: Mode = 'replicate', streamBlock?: string) =>
    runReplicator({
      migration,
      slotName,
      publicationName: slotName,
      conflictPolicy: 'error',
      // Batches commit when the stream goes idle, not by age: changes received together share a target transaction.
      batch: { maxRows: 1000, maxBytes: 1 << 20, maxDelayMs: 10_000 },
      retryWindowMs: 60_000,
      heartbeatMs: 200,
      ...replicatorConnections(source, target, database),
      log: (line) => logs.push(line),
      ddl: { mode, selection },
      streamBlock,
    }).then(
      (end): ReplicatorEnd | Error => end,
      (error: Error) => error,
    );
  /** Asks the running replicator to drain to the source's current end of WAL. */
  const drainNow = async () => {
    const { rows } = await src.query<{ lsn: string }>('SELECT pg_current_wal_insert_lsn()::text AS lsn');
    await setDrainLsn(control, migration, rows[0]!.lsn);
  };
  const stop = async () => {
    await waitFor('the walsender to release the slot', async () => {
      const { rows } = await src.query('SELECT NOT active AS released FROM pg_replication_slots WHERE slot_name = $1', [slotName]);
      return rows.length === 0 || rows[0].released;
    });
    await dropSlotAndPublication(src, { slotName, publicationName: slotName });
    await Promise.all([control.end(), src.end()]);
  };
  return { migration, slotName, control, src, run, drainNow, stop, logs };
}

/** Writes to the source in a loop (inserts, updates, deletes on the columns no DDL below touches) until stopped. */
function writeLoad(database: string) {
  let running = true;
  let written = 0;
  const done = (async () => {
    const client = await source.connect(database);
    try {
      for (let i = 0; running; i++) {
        await client.query('BEGIN');
        await client.query('INSERT INTO items (id, name) VALUES ($1, $2)', [100_000 + i, `load ${i}`]);
        await client.query("UPDATE items SET name = name || '+' WHERE id = $1", [100_000 + Math.floor(i / 2)]);
        if (i % 5 === 0) await client.query('DELETE FROM items WHERE id = $1', [100_000 + i - 3]);
        await client.query('INSERT INTO log VALUES ($1, $2)', ['load', i]);
        await client.query('COMMIT');
        written++;
      }
    } finally {
      await client.end();
    }
  })();
  return {
    stop: async () => {
      running = false;
      await done;
      return written;
    },
  };
}

async function expectIdentical(database: string) {
  expect(await databaseHashes(target, database)).toEqual(await databaseHashes(source, database));
  const [fromSource, onTarget] = await Promise.all([source, target].map((c) => c.connect(database).then(async (client) => {
    try {
      return await schemaFingerprint(client);
    } finally {
      await client.end();
    }
  })));
  // Sequence values are synchronised at cutover, not by CDC.
  const noValues = (f: Record<string, string[]>) => ({ ...f, sequences: f.sequences!.map((s) => s.replace(/ \| [^|]*$/, '')) });
  expect(noValues(onTarget!)).toEqual(noValues(fromSource!));
}

describe('schema changes during CDC', () => {
  it('applies every kind of schema change in commit order under write load, and the target ends identical (schema and data)', async () => {
    const r = await setUp('kinds');
    const running = r.run();
    const load = writeLoad('kinds');
    try {
      const ddl = async (sql: string) => {
        await r.src.query(sql);
        // Some writes between the changes.
        await waitFor('writes', async () => (await r.src.query('SELECT count(*)::int AS n FROM log')).rows[0].n > 0);
      };
      await ddl('ALTER TABLE items ADD COLUMN extra int DEFAULT 7');
      await ddl('UPDATE items SET extra = id WHERE id % 3 = 0');
      await ddl('ALTER TABLE items ALTER COLUMN extra TYPE bigint');
      await ddl('ALTER TABLE items RENAME COLUMN extra TO renamed');
      await ddl('ALTER TABLE items ALTER COLUMN renamed SET DEFAULT 42');
      await ddl("INSERT INTO items (id, name) VALUES (1, 'takes the default')");
      await ddl('ALTER TABLE items ALTER COLUMN renamed DROP DEFAULT');
      await ddl('ALTER TABLE items ALTER COLUMN qty SET DEFAULT 5');
      await ddl('CREATE INDEX items_name_idx ON items (name)');
      await ddl('CREATE UNIQUE INDEX CONCURRENTLY items_name_id_idx ON items (name, id)');
      await ddl('DROP INDEX items_name_idx');
      await ddl('ALTER TABLE items ADD CONSTRAINT items_id_positive CHECK (id > 0)');
      await ddl('ALTER TABLE items ADD CONSTRAINT items_qty_check CHECK (qty >= 0)');
      await ddl('ALTER TABLE items DROP CONSTRAINT items_id_positive');
      await ddl('CREATE SEQUENCE counters START 10');
      await ddl('ALTER SEQUENCE counters INCREMENT BY 5 MAXVALUE 100000');
      // A new table: rows in the CREATE's own transaction and in later ones, each exactly once (no key: duplicates would show).
      await ddl("BEGIN; CREATE TABLE fresh (n int, v text); INSERT INTO fresh SELECT g, 'same transaction' FROM generate_series(1, 50) g; COMMIT");
      await ddl("INSERT INTO fresh SELECT g, 'later' FROM generate_series(51, 80) g");
      // Published without a key, it keeps taking UPDATEs and DELETEs on the source (REPLICA IDENTITY FULL).
      await ddl("UPDATE fresh SET v = 'updated' WHERE n <= 10");
      await ddl('DELETE FROM fresh WHERE n > 75');
      await ddl('CREATE TABLE keyed (id serial PRIMARY KEY, v text)');
      await ddl("INSERT INTO keyed (v) SELECT 'row ' || g FROM generate_series(1, 20) g");
      await ddl("UPDATE keyed SET v = 'updated' WHERE id <= 5");
      await ddl('ALTER TABLE keyed ADD COLUMN item_id int, ADD CONSTRAINT keyed_item_fk FOREIGN KEY (item_id) REFERENCES items (id)');
      await ddl('ALTER TABLE keyed ADD CONSTRAINT keyed_v_id_key UNIQUE (v, id)');
      await ddl('ALTER TABLE keyed DROP CONSTRAINT keyed_v_id_key');
      // A partitioned table, and a partition created later: published through the root, never added on its own.
      await ddl('CREATE TABLE events (id int, at date, PRIMARY KEY (id, at)) PARTITION BY RANGE (at)');
      await ddl("CREATE TABLE events_2026 PARTITION OF events FOR VALUES FROM ('2026-01-01') TO ('2027-01-01')");
      await ddl("INSERT INTO events SELECT g, '2026-01-01'::date + g FROM generate_series(1, 30) g");
      await ddl("BEGIN; CREATE TABLE events_2027 PARTITION OF events FOR VALUES FROM ('2027-01-01') TO ('2028-01-01'); INSERT INTO events VALUES (1, '2027-02-02'); COMMIT");
      await ddl('ALTER TABLE items DROP COLUMN renamed');
      await ddl("CREATE TABLE doomed (id int PRIMARY KEY); INSERT INTO doomed VALUES (1)");
      await ddl('DROP TABLE doomed');
      // Outside the selection: never applied (the target has no schema "elsewhere").
      await ddl('CREATE SCHEMA elsewhere; CREATE TABLE elsewhere.t (id int); INSERT INTO elsewhere.t VALUES (1)');
      expect(await load.stop()).toBeGreaterThan(0);
      await r.drainNow();
      expect(await running).toBe('drained');
      await r.src.query('DROP SCHEMA elsewhere CASCADE');
      await expectIdentical('kinds');
      const [fresh] = await target.sql("SELECT count(*)::int AS n, count(DISTINCT n)::int AS distinct_n FROM fresh", 'kinds');
      expect(fresh!.rows[0]).toEqual({ n: 75, distinct_n: 75 });
      const records = await listDdlRecords(r.control, r.migration);
      expect(records.every((d) => d.status === 'applied')).toBe(true);
      expect(records.map((d) => d.statement)).toContain('ALTER TABLE items ALTER COLUMN extra TYPE bigint');
      expect(records.map((d) => d.statement).join('\n')).not.toContain('elsewhere');
    } finally {
      await load.stop();
      await r.stop();
    }
  });

  it('cdc.ddl "error" stops replication at a schema change, recording the statement, and stops there again on resume; applied by hand and resumed with "pause", it is skipped', async () => {
    const r = await setUp('rejected');
    try {
      await r.src.query("INSERT INTO items (id, name) VALUES (1, 'before')");
      await r.src.query('ALTER TABLE items ADD COLUMN note text');
      await r.src.query("INSERT INTO items (id, name, note) VALUES (2, 'after', 'noted')");
      const stopped = await r.run('error');
      expect(stopped).toMatchObject({ name: 'pgferry.DdlNotApplied', statement: 'ALTER TABLE items ADD COLUMN note text' });
      expect((stopped as Error).message).toContain('cdc.ddl is "error"');
      expect((stopped as Error).message).toContain('ALTER TABLE items ADD COLUMN note text');
      expect((stopped as Error).message).toContain('pgferry resume SPEC');
      // Everything before the change is on the target, nothing after it.
      const [before] = await target.sql('SELECT id FROM items ORDER BY id', 'rejected');
      expect(before!.rows).toEqual([{ id: 1 }]);
      expect(await listDdlRecords(r.control, r.migration)).toMatchObject([{ statement: 'ALTER TABLE items ADD COLUMN note text', status: 'paused' }]);

      expect(await r.run('error')).toMatchObject({ name: 'pgferry.DdlNotApplied' });
      await target.sql('ALTER TABLE items ADD COLUMN note text', 'rejected');
      const resumed = r.run('pause');
      await r.drainNow();
      expect(await resumed).toBe('drained');
      await expectIdentical('rejected');
      expect(await listDdlRecords(r.control, r.migration)).toMatchObject([{ status: 'skipped' }]);
    } finally {
      await r.stop();
    }
  });

  it('cdc.ddl "pause" stops before each change with the target holding everything before it; resumed, the change is skipped as applied by hand', async () => {
    const r = await setUp('paused');
    try {
      // Committed in the same batch as the change: the stop must leave them applied, or a column dropped by hand would be missing when they come again.
      await r.src.query("INSERT INTO items (id, name, qty) VALUES (10, 'with qty', 3)");
      await r.src.query("UPDATE items SET qty = 4 WHERE id = 10");
      await r.src.query('ALTER TABLE items DROP COLUMN qty');
      const dropped = await r.run('pause');
      expect(dropped).toMatchObject({ name: 'pgferry.DdlNotApplied', statement: 'ALTER TABLE items DROP COLUMN qty' });
      const [held] = await target.sql('SELECT id, qty FROM items', 'paused');
      expect(held!.rows).toEqual([{ id: 10, qty: 4 }]);
      await target.sql('ALTER TABLE items DROP COLUMN qty', 'paused');

      await r.src.query('CREATE INDEX items_name_idx ON items (name)');
      await r.src.query("INSERT INTO items (id, name) VALUES (1, 'after')");
      const stopped = await r.run('pause');
      expect(stopped).toMatchObject({ name: 'pgferry.DdlNotApplied', statement: 'CREATE INDEX items_name_idx ON items (name)' });
      expect((stopped as Error).message).toContain('Apply it to the target by hand if the target needs it, then run `pgferry resume SPEC`: the statement is then skipped.');
      await target.sql('CREATE INDEX items_name_idx ON items (name)', 'paused');
      const resumed = r.run('pause');
      await r.drainNow();
      expect(await resumed).toBe('drained');
      await expectIdentical('paused');
    } finally {
      await r.stop();
    }
  });

  it('a statement that fails on the target stops replication naming it and the error; once the target is fixed, resume runs it again, and one applied by hand counts as applied', async () => {
    const r = await setUp('failing');
    try {
      // Only the target has a view on items.name: changing its type fails there.
      await target.sql('CREATE VIEW names AS SELECT name FROM items', 'failing');
      await r.src.query("INSERT INTO items (id, name) VALUES (1, 'one')");
      await r.src.query('ALTER TABLE items ALTER COLUMN name TYPE varchar(200)');
      await r.src.query("INSERT INTO items (id, name) VALUES (2, 'two')");
      const stopped = await r.run();
      expect(stopped).toMatchObject({ name: 'pgferry.DdlNotApplied', statement: 'ALTER TABLE items ALTER COLUMN name TYPE varchar(200)' });
      expect((stopped as Error).message).toContain('failed on the target: cannot alter type of a column used by a view or rule');
      expect((stopped as Error).message).toContain('Statement: ALTER TABLE items ALTER COLUMN name TYPE varchar(200)');
      expect((stopped as Error).message).toContain('Fix the target');
      expect(await listDdlRecords(r.control, r.migration)).toMatchObject([{ status: 'failed' }]);
      // Still failing: stops again.
      expect(await r.run()).toMatchObject({ name: 'pgferry.DdlNotApplied' });
      await target.sql('DROP VIEW names', 'failing');

      // A second change the user applies by hand after it failed: the retry finds it there.
      await target.sql('CREATE TABLE blocker (id int)', 'failing');
      await r.src.query('CREATE TABLE blocker (id int PRIMARY KEY)');
      await r.src.query('INSERT INTO blocker VALUES (1), (2)');
      expect(await r.run()).toMatchObject({ name: 'pgferry.DdlNotApplied', statement: 'CREATE TABLE blocker (id int PRIMARY KEY)' });
      await target.sql('DROP TABLE blocker; CREATE TABLE blocker (id int PRIMARY KEY)', 'failing');
      const resumed = r.run();
      await r.drainNow();
      expect(await resumed).toBe('drained');
      await expectIdentical('failing');
      const records = await listDdlRecords(r.control, r.migration);
      expect(records.map((d) => d.status)).toEqual(['applied', 'applied']);
      expect(records[1]!.detail).toContain('already on the target');
    } finally {
      await r.stop();
    }
  });

  it('cleanup removes the event triggers, functions, table and schema with the last publication using them', async () => {
    const r = await setUp('cleanup');
    const other = await source.connect('cleanup');
    try {
      // A second migration from the same database shares the capture.
      await installDdlCapture(other, 'second_pub', { include: [], exclude: [] });
      await ensurePublication(other, { name: 'second_pub', tables: [{ schema: 'public', name: 'items' }, CAPTURE_TABLE] });
      const captureLeft = async () => {
        const [rows] = await source.sql(
          `SELECT (SELECT count(*)::int FROM pg_event_trigger WHERE evtname LIKE 'pgferry%') AS triggers,
                  (SELECT count(*)::int FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname = 'pgferry_capture') AS functions,
                  (SELECT count(*)::int FROM pg_namespace WHERE nspname = 'pgferry_capture') AS schemas`,
          'cleanup',
        );
        return rows!.rows[0];
      };
      expect(await captureLeft()).toEqual({ triggers: 2, functions: 4, schemas: 1 });
      await dropSlotAndPublication(r.src, { slotName: r.slotName, publicationName: r.slotName });
      expect(await captureLeft()).toEqual({ triggers: 2, functions: 4, schemas: 1 });
      await dropSlotAndPublication(other, { slotName: 'none', publicationName: 'second_pub' });
      expect(await captureLeft()).toEqual({ triggers: 0, functions: 0, schemas: 0 });
      // DDL on the source works as before.
      await source.sql('ALTER TABLE items ADD COLUMN later int', 'cleanup');
    } finally {
      await other.end();
      await r.stop();
    }
  });

  it('a schema change inside a large transaction streamed while in progress is applied when the transaction comes again whole', async () => {
    const r = await setUp('streamed');
    try {
      // 64kB blocks: the transaction below is streamed in progress; its ALTER makes the stream fall back to whole transactions.
      const running = r.run('replicate', '64kB');
      await r.src.query(`BEGIN;
        INSERT INTO items (id, name) SELECT g, repeat('a', 200) FROM generate_series(1, 3000) g;
        ALTER TABLE items ADD COLUMN late text DEFAULT 'd';
        INSERT INTO items (id, name, late) SELECT g, repeat('b', 200), 'set' FROM generate_series(3001, 6000) g;
        COMMIT`);
      await r.src.query("UPDATE items SET late = 'after' WHERE id % 100 = 0");
      await r.drainNow();
      expect(await running).toBe('drained');
      // PostgreSQL 13 never streams a transaction in progress: it comes whole in the first place.
      const fellBack = r.logs.some((line) => line.includes('a schema change arrived in a transaction streamed while in progress'));
      expect(fellBack).toBe(source.major >= 14);
      await expectIdentical('streamed');
    } finally {
      await r.stop();
    }
  });

  it('without the privilege to create event triggers, "replicate" is refused with the remedy and "pause" goes on without capture, saying so', async () => {
    await source.sql('CREATE DATABASE unprivileged');
    await source.sql("CREATE ROLE mover LOGIN REPLICATION PASSWORD 'mover-pw'", 'unprivileged');
    const client = new pg.Client({ ...clientConfig(source, 'unprivileged'), user: 'mover', password: 'mover-pw' });
    await client.connect();
    try {
      const logs: string[] = [];
      const selection = { include: [], exclude: [] };
      await expect(setUpDdlCapture(client, 'pub', { mode: 'replicate', selection, log: (l) => logs.push(l) })).rejects.toMatchObject({
        name: 'pgferry.DdlCaptureUnavailable',
        message: expect.stringContaining('set cdc.ddl to "pause" or "error"'),
      });
      expect(await setUpDdlCapture(client, 'pub', { mode: 'pause', selection, log: (l) => logs.push(l) })).toBe(false);
      expect(logs).toEqual(['schema changes on the source will not be detected: the source user may not create event triggers (cdc.ddl "pause")']);
      const [installed] = await source.sql("SELECT count(*)::int AS n FROM pg_namespace WHERE nspname = 'pgferry_capture'", 'unprivileged');
      expect(installed!.rows[0].n).toBe(0);
    } finally {
      await client.end();
    }
  });

  it('a change committed before post-data began, which post-data already built, counts as applied; one after it that finds its object stops', async () => {
    const r = await setUp('postdata');
    try {
      // While the full load runs: captured, not yet applied.
      await r.src.query('CREATE INDEX items_name_idx ON items (name)');
      await r.src.query('ALTER TABLE items ADD CONSTRAINT qty_positive CHECK (qty >= 0)');
      await r.src.query("INSERT INTO items (id, name) VALUES (1, 'one')");
      // Post-data begins: it builds the index and the constraint from the source's definitions.
      const { rows } = await r.src.query<{ lsn: string }>('SELECT pg_current_wal_insert_lsn()::text AS lsn');
      await recordPostDataLsn(r.control, r.migration, rows[0]!.lsn);
      await target.sql('CREATE INDEX items_name_idx ON items (name); ALTER TABLE items ADD CONSTRAINT qty_positive CHECK (qty >= 0)', 'postdata');
      // After post-data began, a target that already has the object is a conflict to look at.
      await target.sql('CREATE INDEX items_qty_idx ON items (qty)', 'postdata');
      await r.src.query('CREATE INDEX items_qty_idx ON items (qty)');
      expect(await r.run()).toMatchObject({ name: 'pgferry.DdlNotApplied', statement: 'CREATE INDEX items_qty_idx ON items (qty)' });
      expect(await listDdlRecords(r.control, r.migration)).toMatchObject([
        { status: 'applied', detail: expect.stringContaining('already made by post-data') },
        { status: 'applied', detail: expect.stringContaining('already made by post-data') },
        { status: 'failed' },
      ]);
      const resumed = r.run();
      await r.drainNow();
      expect(await resumed).toBe('drained');
      await expectIdentical('postdata');
    } finally {
      await r.stop();
    }
  });
});

/**
 * Reverse replication (cutover.reverse) on real clusters of different majors: changes made on the
 * target after arming reach the source, a fallback's drain returns once the source holds
 * everything up to the drain point, forward and reverse streams running at once never loop
 * (replication origins), a third stream from the target still forwards what the forward applier
 * wrote (a cascade), and endReverse leaves no slot, publication, origin or control schema.
 */
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runReplicator, type ReplicatorEnd } from '../../engine/cdc/replicator.js';
import { createSlotWithSnapshot, ensurePublication, replicationNames, slotState } from '../../engine/cdc/slot.js';
import { CANONICAL_STARTUP_OPTIONS, connectSide } from '../../engine/connect/index.js';
import { beginMigration, ensureControlSchema, readReplicationStatus, registerReplication, setDrainLsn } from '../../engine/control/index.js';
import { currentWalLsn } from '../../engine/cutover/index.js';
import { originFamily } from '../../engine/cdc/origin.js';
import { checkReverse } from '../../engine/precheck/reverse.js';
import { armReverse, copySequencesBack, drainReverse, endReverse, forwardOrigin, readReverseStatus, reverseReplicationNames } from '../../engine/cutover/reverse.js';
import { parseSpec, type MigrationSpec } from '../../engine/spec/index.js';
import { reverseReplicationStep } from '../../engine/steps/reverse-replication.js';
import type { CallbackStepContext } from '../../engine/steps/task.js';
import { startClusters, type LocalCluster } from '../../local/dev/cluster.js';
import { DefaultSecretsProvider } from '../../platform/secrets/index.js';
import { clientConfig, replicationConnector, scratchDir } from '../support/clusters.js';
import { databaseHashes } from '../support/equality.js';
import { sleep, waitFor } from '../support/wait.js';

let source: LocalCluster;
let target: LocalCluster;
const scratch = scratchDir('reverse');
const secrets = new DefaultSecretsProvider();

beforeAll(async () => {
  [source, target] = await startClusters([
    { major: 15, label: 'reverse-source' },
    { major: 17, label: 'reverse-target' },
  ]);
});

afterAll(async () => {
  await Promise.all([source, target].map((c) => c?.stop()));
  scratch.remove();
});

const TABLES = `
  CREATE TABLE items (id int PRIMARY KEY, side text NOT NULL, n int NOT NULL DEFAULT 0);
  CREATE TABLE tickets (id serial PRIMARY KEY, note text);`;

/** Two databases with the same tables and rows, a spec with cutover.reverse, and clients on both. */
async function setUp(db: string) {
  await source.sql(`CREATE DATABASE ${db}`);
  await target.sql(`CREATE DATABASE ${db}`);
  await source.sql(TABLES, db);
  await target.sql(TABLES, db);
  const spec = parseSpec({
    name: `rev-${db}`,
    mode: 'full+cdc',
    source: { secret: scratch.secretFor(`${db}-source`, source), database: db },
    target: { secret: scratch.secretFor(`${db}-target`, target), database: db },
    cdc: { batch: { maxDelayMs: 50 } },
    cutover: { fenceSource: true, reverse: true },
  });
  const src = await source.connect(db);
  const tgt = await target.connect(db);
  for (const client of [src, tgt]) client.on('error', () => undefined);
  return { spec, src, tgt };
}

/** The reverse replication step running (as the replicate task with PGFERRY_REVERSE=1 runs it). */
function startReverse(spec: MigrationSpec) {
  const logs: string[] = [];
  const context: CallbackStepContext = {
    migration: spec.name,
    spec,
    connectSource: () => connectSide('source', spec.source, secrets, { applicationName: 'pgferry-replicate' }),
    connectTarget: () => connectSide('target', spec.target, secrets, { applicationName: 'pgferry-replicate' }),
    log: (line) => logs.push(line),
    callback: { success: async () => undefined, reportFailure: async () => undefined },
    gone: new AbortController().signal,
  };
  const stop = new AbortController();
  let ended: 'ok' | Error | undefined;
  const run = reverseReplicationStep(context, { signal: stop.signal, secrets }).then(
    () => (ended = 'ok'),
    (error: Error) => (ended = error),
  );
  return { logs, run, ended: () => ended, stop: async () => (stop.abort(), await run) };
}

/** A plain replicator from `from` to `to` (database `db` on both), over a slot and publication of its own on `from`. */
async function startStream(options: {
  from: LocalCluster;
  to: LocalCluster;
  fromDb: string;
  toDb: string;
  migration: string;
  slotName: string;
  origin?: { name: string; skipOrigins: string[] };
  streamBlock?: string;
}) {
  const { from, to, fromDb, toDb, migration, slotName } = options;
  const control = await to.connect(toDb);
  control.on('error', () => undefined);
  await ensureControlSchema(control);
  await beginMigration(control, migration, { mode: 'full+cdc' });
  const fromClient = await from.connect(fromDb);
  fromClient.on('error', () => undefined);
  await ensurePublication(fromClient, { name: slotName, tables: ['items', 'tickets'].map((name) => ({ schema: 'public', name })) });
  const holder = await createSlotWithSnapshot(replicationConnector(from, fromDb), slotName);
  await holder.release();
  await registerReplication(control, migration, { slotName, publicationName: slotName, consistentLsn: holder.slot.consistentLsn });
  const stop = new AbortController();
  let ended: ReplicatorEnd | Error | undefined;
  const run = runReplicator({
    migration,
    slotName,
    publicationName: slotName,
    conflictPolicy: 'error',
    batch: { maxRows: 1000, maxBytes: 1 << 20, maxDelayMs: 50 },
    retryWindowMs: 60_000,
    heartbeatMs: 200,
    connectSource: () => from.connect(fromDb),
    connectTarget: async () => {
      const client = new pg.Client({ ...clientConfig(to, toDb), application_name: 'pgferry-replicate' });
      client.on('error', () => undefined);
      await client.connect();
      return client;
    },
    streamConfig: async () => ({ ...clientConfig(from, fromDb), replication: 'database', options: CANONICAL_STARTUP_OPTIONS }) as pg.ClientConfig,
    log: () => undefined,
    signal: stop.signal,
    ...(options.origin ? { origin: options.origin } : {}),
    ...(options.streamBlock ? { streamBlock: options.streamBlock } : {}),
  }).then(
    (end) => (ended = end),
    (error: Error) => (ended = error),
  );
  const status = () => readReplicationStatus(control, migration);
  /** Drains to `from`'s current end of WAL; the run ends 'drained'. */
  const drain = async () => {
    await setDrainLsn(control, migration, await currentWalLsn(fromClient));
    await run;
    expect(ended).toBe('drained');
  };
  const end = async () => {
    stop.abort();
    await run;
    await waitFor('the walsender to release the slot', async () => !(await slotState(fromClient, slotName)).active);
    await fromClient.query('SELECT pg_drop_replication_slot($1) FROM pg_replication_slots WHERE slot_name = $1', [slotName]);
    await fromClient.query(`DROP PUBLICATION IF EXISTS ${slotName}`);
    await Promise.all([control.end(), fromClient.end()]);
  };
  return { control, status, drain, end, ended: () => ended };
}

const origins = async (client: pg.Client) => (await client.query<{ roname: string }>('SELECT roname FROM pg_replication_origin ORDER BY 1')).rows.map((r) => r.roname);
const itemsOf = async (client: pg.Client) => (await client.query('SELECT id, side, n FROM items ORDER BY id')).rows;

/** `count` inserts, updates of every other row, deletes of every tenth on one side, in transactions of 10 rows. */
async function writeOn(client: pg.Client, side: string, first: number, count: number): Promise<number> {
  let changes = 0;
  for (let start = first; start < first + count; start += 10) {
    await client.query('INSERT INTO items (id, side) SELECT g, $3 FROM generate_series($1::int, $2::int) g', [start, start + 9, side]);
    changes += 10;
  }
  const updated = await client.query('UPDATE items SET n = n + 1 WHERE side = $1 AND id % 2 = 0', [side]);
  const deleted = await client.query('DELETE FROM items WHERE side = $1 AND id % 10 = 5', [side]);
  return changes + (updated.rowCount ?? 0) + (deleted.rowCount ?? 0);
}

describe('reverse replication', () => {
  it('applies changes made on the target after arming to the fenced source; drains for fallback; sets sequences back; ends without a trace', async () => {
    const { spec, src, tgt } = await setUp('back');
    const names = reverseReplicationNames(spec);
    try {
      // The same rows on both sides, as after cutover; the source is fenced read-only.
      for (const client of [src, tgt]) await client.query("INSERT INTO items (id, side) SELECT g, 'both' FROM generate_series(1, 20) g");
      await source.sql(`ALTER DATABASE back SET default_transaction_read_only = on`);
      const armed = await armReverse(spec, src, tgt);
      expect(armed).toMatchObject({ slotName: names.slotName, publicationName: names.publicationName });
      expect((await slotState(tgt, names.slotName)).exists).toBe(true);
      // Arming again changes nothing.
      expect(await armReverse(spec, src, tgt)).toEqual(armed);

      const reverse = startReverse(spec);
      await tgt.query("INSERT INTO items (id, side) SELECT g, 'tgt' FROM generate_series(100, 149) g");
      await tgt.query('UPDATE items SET n = 7 WHERE id BETWEEN 1 AND 10');
      await tgt.query('DELETE FROM items WHERE id BETWEEN 11 AND 15');
      await tgt.query("INSERT INTO tickets (note) SELECT 'after switch' FROM generate_series(1, 5)");
      await waitFor('the target changes on the source', async () => JSON.stringify(await itemsOf(src)) === JSON.stringify(await itemsOf(tgt)));

      // The reverse applier's sessions are lost: it resumes from its checkpoint, taking its origin again.
      const killed = await src.query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'pgferry-replicate' AND pid <> pg_backend_pid()");
      expect(killed.rowCount).toBeGreaterThan(0);
      // Fallback: the target takes no more writes (the caller's fence), the stream drains to a point marked after them.
      await tgt.query('UPDATE items SET n = 99 WHERE id = 100');
      const drainLsn = await drainReverse(spec, src, tgt, { timeoutMs: 60_000 });
      // Everything up to the drain point is on the source the moment drainReverse returns.
      expect(await databaseHashes(source, 'back')).toEqual(await databaseHashes(target, 'back'));
      await reverse.run;
      expect(reverse.ended()).toBe('ok');
      const status = (await readReverseStatus(src, spec.name))!;
      expect(status).toMatchObject({ slotName: names.slotName, drained: true, drainLsn, lastError: null });
      expect(status.rowsApplied).toBe(50 + 10 + 5 + 5 + 1);

      await copySequencesBack(spec, src, tgt);
      await src.query('SET default_transaction_read_only = off');
      expect((await src.query("SELECT nextval('tickets_id_seq')::int AS v")).rows[0].v).toBe(6);

      const ended = await endReverse(spec, src, tgt, { dropControl: true });
      expect(ended).toMatchObject({ slotDropped: true, publicationDropped: true, controlDropped: { source: true, target: false }, controlKept: [] });
      expect(ended.originsDropped).toContain(names.reverseOrigin);
      for (const client of [src, tgt]) {
        expect((await client.query('SELECT slot_name FROM pg_replication_slots')).rows).toEqual([]);
        expect((await client.query('SELECT pubname FROM pg_publication')).rows).toEqual([]);
        expect(await origins(client)).toEqual([]);
        expect((await client.query("SELECT 1 FROM pg_namespace WHERE nspname = 'pgferry'")).rowCount).toBe(0);
      }
      // Ending again finds nothing to do.
      expect(await endReverse(spec, src, tgt, { dropControl: true })).toMatchObject({ slotDropped: false, publicationDropped: false, originsDropped: [] });
      expect(await readReverseStatus(src, spec.name)).toBeUndefined();
    } finally {
      await source.sql('ALTER DATABASE back RESET default_transaction_read_only');
      await Promise.all([src.end(), tgt.end()]);
    }
  });

  it('never loops: forward and reverse streams at once apply every write exactly once, and a cascade from the target still forwards', async () => {
    const { spec, src, tgt } = await setUp('loops');
    await source.sql('CREATE DATABASE loops_cascade');
    await source.sql(TABLES, 'loops_cascade');
    const forward = await startStream({
      from: source,
      to: target,
      fromDb: 'loops',
      toDb: 'loops',
      migration: spec.name,
      slotName: replicationNames(spec).slotName,
      origin: forwardOrigin(spec),
    });
    const armed = await armReverse(spec, src, tgt);
    const reverse = startReverse(spec);
    // A third stream from the target without origin filtering: another migration of a cascade.
    const cascade = await startStream({ from: target, to: source, fromDb: 'loops', toDb: 'loops_cascade', migration: 'cascade', slotName: 'pgferry_cascade' });
    try {
      await waitFor('the reverse stream to stream', async () => (await readReplicationStatus(src, spec.name))?.streamingSince);
      // Writes on both sides at once, on separate keys.
      const [sourceChanges, targetChanges] = await Promise.all([writeOn(src, 'src', 1, 200), writeOn(tgt, 'tgt', 1001, 200)]);
      await waitFor('both sides to hold every write', async () => {
        for (const end of [forward.ended(), reverse.ended(), cascade.ended()]) if (end instanceof Error) throw end;
        const [a, b] = [await itemsOf(src), await itemsOf(tgt)];
        return a.length === 360 && JSON.stringify(a) === JSON.stringify(b);
      });
      // No ping-pong: what each side has applied stays put while the streams keep running.
      const applied = async () => [(await forward.status())?.rowsApplied, (await readReverseStatus(src, spec.name))?.rowsApplied];
      const before = await applied();
      await sleep(3000);
      expect(await applied()).toEqual(before);
      expect(await itemsOf(src)).toHaveLength(360);

      // Each side applied exactly the other side's own writes, once.
      await forward.drain();
      await drainReverse(spec, src, tgt, { timeoutMs: 60_000 });
      await reverse.run;
      expect(reverse.ended()).toBe('ok');
      expect((await forward.status())?.rowsApplied).toBe(sourceChanges);
      expect((await readReverseStatus(src, spec.name))?.rowsApplied).toBe(targetChanges);
      expect(await databaseHashes(source, 'loops')).toEqual(await databaseHashes(target, 'loops'));

      // The cascade got the target's own writes and those the forward applier made there (as it
      // wrote them: its batches may fold several changes of a row into one).
      await cascade.drain();
      expect((await cascade.status())?.rowsApplied).toBeGreaterThan(targetChanges);
      expect(await databaseHashes(source, 'loops_cascade')).toEqual(await databaseHashes(target, 'loops'));
      expect(armed.switchLsn).toMatch(/^[0-9A-F]+\/[0-9A-F]+$/);
    } finally {
      await reverse.stop();
      await forward.end();
      await cascade.end();
      await endReverse(spec, src, tgt, { dropControl: false });
      expect(await origins(src)).toEqual([]);
      expect(await origins(tgt)).toEqual([]);
      await Promise.all([src.end(), tgt.end()]);
    }
  });

  it('marks transactions applied early (streamed in progress) with an origin of their own, which the other direction skips', async () => {
    await source.sql('CREATE DATABASE marks');
    await target.sql('CREATE DATABASE marks');
    await source.sql('CREATE DATABASE marks_back');
    for (const [cluster, db] of [[source, 'marks'], [target, 'marks'], [source, 'marks_back']] as const) await cluster.sql(TABLES, db);
    // 64kB blocks: the big transaction below is streamed while in progress and applied early.
    const forward = await startStream({
      from: source,
      to: target,
      fromDb: 'marks',
      toDb: 'marks',
      migration: 'marks',
      slotName: 'pgferry_marks',
      origin: { name: 'marks_fwd', skipOrigins: [] },
      streamBlock: '64kB',
    });
    // A stream back from the target that skips the forward applier's origins, the early ones included.
    const back = await startStream({
      from: target,
      to: source,
      fromDb: 'marks',
      toDb: 'marks_back',
      migration: 'marks-back',
      slotName: 'pgferry_marks_back',
      origin: { name: 'marks_rev', skipOrigins: originFamily('marks_fwd') },
    });
    const src = await source.connect('marks');
    const tgt = await target.connect('marks');
    try {
      await src.query("INSERT INTO items (id, side) VALUES (0, 'small')");
      await src.query("INSERT INTO items (id, side) SELECT g, repeat('x', 200) FROM generate_series(1, 5000) g");
      await tgt.query("INSERT INTO items (id, side) VALUES (-1, 'target')");
      await forward.drain();
      const [stats] = await source.sql("SELECT stream_txns FROM pg_stat_replication_slots WHERE slot_name = 'pgferry_marks'", 'marks');
      expect(Number(stats!.rows[0].stream_txns)).toBeGreaterThanOrEqual(1);
      const marked = await tgt.query<{ name: string }>(
        "SELECT external_id AS name FROM pg_replication_origin_status WHERE local_lsn <> '0/0' AND external_id LIKE 'marks_fwd%' ORDER BY 1",
      );
      expect(marked.rows.map((r) => r.name)).toEqual(['marks_fwd', 'marks_fwd_1']);
      // Only the target's own write went back.
      await back.drain();
      expect((await back.status())?.rowsApplied).toBe(1);
      expect((await source.sql('SELECT id, side FROM items', 'marks_back'))[0]!.rows).toEqual([{ id: -1, side: 'target' }]);
    } finally {
      await forward.end().catch(() => undefined);
      await back.end().catch(() => undefined);
      const { rows } = await tgt.query<{ roname: string }>("SELECT roname FROM pg_replication_origin WHERE roname LIKE 'marks%'");
      for (const { roname } of rows) await tgt.query('SELECT pg_replication_origin_drop($1)', [roname]).catch(() => undefined);
      await Promise.all([src.end(), tgt.end()]);
    }
  });

  it('is prechecked: replication origins on both sides, and a slot on the target', async () => {
    await source.sql('CREATE DATABASE prechecked');
    await source.sql("CREATE ROLE plain_applier LOGIN PASSWORD 'plain'");
    const admin = await source.connect('prechecked');
    const plain = new pg.Client({ ...clientConfig(source, 'prechecked'), user: 'plain_applier', password: 'plain' });
    plain.on('error', () => undefined);
    await plain.connect();
    const tgt = await target.connect();
    try {
      const allowed = await checkReverse({ client: admin, user: 'admin' }, { client: tgt, user: 'admin' });
      expect(allowed.map((c) => [c.id, c.status])).toEqual([
        ['source.replication_origins', 'pass'],
        ['target.replication_origins', 'pass'],
        ['target.reverse_slot', 'pass'],
      ]);
      const refused = await checkReverse({ client: plain, user: 'plain_applier' }, { client: plain, user: 'plain_applier' });
      expect(refused.map((c) => [c.id, c.status])).toEqual([
        ['source.replication_origins', 'fail'],
        ['target.replication_origins', 'fail'],
        ['target.reverse_slot', 'fail'],
      ]);
      expect(refused[0]!.remediation).toContain('GRANT EXECUTE ON FUNCTION pg_replication_origin_create(text), pg_replication_origin_session_setup(text)');
      expect(refused[2]!.message).toContain('user plain_applier may not create replication slots');
      // With the grant, the plain user passes the origin check.
      await admin.query(refused[0]!.remediation!.split(';')[0]!);
      expect((await checkReverse({ client: plain, user: 'plain_applier' }, { client: tgt, user: 'admin' }))[0]!.status).toBe('pass');
    } finally {
      await Promise.all([admin.end(), plain.end(), tgt.end()]);
    }
  });
});

/**
 * `npm run bench:cdc [-- --rows 1000000 --nopk-rows 100000 --delete-rows 20000 --tps 2000 --seconds 20 --track-keys]`:
 * change data capture, pgferry against PostgreSQL's native logical replication
 * (`CREATE SUBSCRIPTION … copy_data = false`), on the same data, in the same run:
 *   1. seconds from commit to applied for a 1M-row UPDATE, a 1M-row INSERT, and a 20k-row
 *      DELETE on a table without a primary key (REPLICA IDENTITY FULL);
 *   2. replication lag (p50, p99, max) under pgbench at a fixed rate.
 * "Applied" is when a marker row, updated in a transaction committed right after the measured
 * one, becomes visible on the target: both appliers apply in commit order. Lag is measured the
 * same way, by a probe row written every 50 ms during pgbench. Not part of `npm test`.
 */
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { parseArgs } from 'node:util';
import type pg from 'pg';
import { from as copyFrom, to as copyTo } from 'pg-copy-streams';
import { readReplicationStatus, requestCutover } from '../engine/control/index.js';
import { startClusters, stopAllClusters, type LocalCluster } from '../local/dev/cluster.js';
import { runLocalWorkflow } from '../local/runner/index.js';
import { secretFile } from './support.js';

const { values } = parseArgs({
  options: {
    rows: { type: 'string', default: '1000000' },
    'nopk-rows': { type: 'string', default: '100000' },
    'delete-rows': { type: 'string', default: '20000' },
    tps: { type: 'string', default: '2000' },
    seconds: { type: 'string', default: '20' },
    only: { type: 'string' },
    'batch-rows': { type: 'string' },
    'track-keys': { type: 'boolean', default: false },
  },
});
const ROWS = Number(values.rows);
const NOPK_ROWS = Number(values['nopk-rows']);
const DELETE_ROWS = Number(values['delete-rows']);
const TPS = Number(values.tps);
const PGBENCH_SECONDS = Number(values.seconds);
const PGBENCH_SCALE = 10;

/** The tables of the UPDATE and INSERT measurements (the decoding floor creates them too). */
const ACCOUNTS_SQL = `
CREATE TABLE accounts (aid int PRIMARY KEY, bid int, abalance int, filler char(84));
CREATE TABLE inserted (aid int PRIMARY KEY, bid int, abalance int, filler char(84));`;
const TABLES_SQL = `${ACCOUNTS_SQL}
CREATE TABLE nopk (id int, v text, at timestamptz);
ALTER TABLE nopk REPLICA IDENTITY FULL;
CREATE TABLE marker (id int PRIMARY KEY, v bigint NOT NULL);
CREATE TABLE pgbench_branches (bid int PRIMARY KEY, bbalance int, filler char(88));
CREATE TABLE pgbench_tellers (tid int PRIMARY KEY, bid int, tbalance int, filler char(84));
CREATE TABLE pgbench_accounts (aid int PRIMARY KEY, bid int, abalance int, filler char(84));
CREATE TABLE pgbench_history (tid int, bid int, aid int, delta int, mtime timestamp, filler char(22));
ALTER TABLE pgbench_history REPLICA IDENTITY FULL;`;
const TABLES = ['accounts', 'inserted', 'nopk', 'marker', 'pgbench_branches', 'pgbench_tellers', 'pgbench_accounts', 'pgbench_history'];

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

async function generate(source: LocalCluster): Promise<void> {
  await source.sql('CREATE DATABASE bench');
  await source.sql(
    `${TABLES_SQL}
     INSERT INTO accounts SELECT a, (a - 1) / 100000 + 1, 0, '' FROM generate_series(1, ${ROWS}) a;
     INSERT INTO nopk SELECT g % ${Math.max(1, Math.floor(NOPK_ROWS / 2))}, md5(g::text), timestamptz '2025-01-01' + g * interval '1 second' FROM generate_series(1, ${NOPK_ROWS}) g;
     INSERT INTO marker VALUES (1, 0), (2, 0);
     INSERT INTO pgbench_branches SELECT b, 0, '' FROM generate_series(1, ${PGBENCH_SCALE}) b;
     INSERT INTO pgbench_tellers SELECT t, (t - 1) / 10 + 1, 0, '' FROM generate_series(1, ${PGBENCH_SCALE * 10}) t;
     INSERT INTO pgbench_accounts SELECT a, (a - 1) / 100000 + 1, 0, '' FROM generate_series(1, ${PGBENCH_SCALE * 100000}) a;`,
    'bench',
  );
  await source.sql('VACUUM ANALYZE', 'bench');
}

/** Target tables with the source's rows, for the native subscriber (which copies no data). */
async function copyForNative(source: LocalCluster, target: LocalCluster): Promise<void> {
  await target.sql('CREATE DATABASE native');
  await target.sql(TABLES_SQL, 'native');
  const [from, to] = [await source.connect('bench'), await target.connect('native')];
  try {
    for (const table of TABLES) {
      await pipeline(from.query(copyTo(`COPY ${table} TO STDOUT`)), to.query(copyFrom(`COPY ${table} FROM STDIN`)));
    }
  } finally {
    await Promise.all([from.end(), to.end()]);
  }
  await target.sql('VACUUM ANALYZE', 'native');
}

interface Side {
  label: string;
  source: pg.Client;
  target: pg.Client;
}

interface Applied {
  /** Commit on the source → applied on the target: the figure compared. */
  seconds: number;
  /** How long the statement itself ran on the source. */
  statementSeconds: number;
  /** Commit → the walsender had sent everything up to the marker (decoding done): the part no applier can avoid. */
  sentSeconds: number;
}

/** Commits `sql` on the source, then bumps the marker; times until the target shows the marker. */
async function commitToApplied(side: Side, sql: string): Promise<Applied> {
  const statementStarted = performance.now();
  await side.source.query(sql);
  const started = performance.now();
  const statementSeconds = (started - statementStarted) / 1000;
  const { rows } = await side.source.query<{ v: string; lsn: string }>(
    'WITH bumped AS (UPDATE marker SET v = v + 1 WHERE id = 1 RETURNING v::text) SELECT v, pg_current_wal_insert_lsn()::text AS lsn FROM bumped',
  );
  const expected = BigInt(rows[0]!.v);
  let sentSeconds: number | undefined;
  for (;;) {
    if (sentSeconds === undefined) {
      const sent = await side.source.query<{ done: boolean }>('SELECT coalesce(max(sent_lsn) >= $1::pg_lsn, false) AS done FROM pg_stat_replication', [rows[0]!.lsn]);
      if (sent.rows[0]!.done) sentSeconds = (performance.now() - started) / 1000;
    }
    const seen = await side.target.query<{ v: string }>('SELECT v::text FROM marker WHERE id = 1');
    if (BigInt(seen.rows[0]!.v) >= expected) {
      const seconds = (performance.now() - started) / 1000;
      return { seconds, statementSeconds, sentSeconds: sentSeconds ?? seconds };
    }
    if (performance.now() - started > 1_800_000) throw new Error(`${side.label}: not applied after 30 minutes`);
    await sleep(10);
  }
}

/** Probe row 2 every 50 ms during pgbench; lag = commit on the source → visible on the target. */
async function lagUnderPgbench(side: Side, source: LocalCluster): Promise<{ p50: number; p99: number; max: number; samples: number; tps: number }> {
  const committed = new Map<bigint, number>();
  const lags: number[] = [];
  let running = true;
  let stopAt = Number.POSITIVE_INFINITY;
  const prober = (async () => {
    while (running) {
      const { rows } = await side.source.query<{ v: string }>('UPDATE marker SET v = v + 1 WHERE id = 2 RETURNING v::text');
      committed.set(BigInt(rows[0]!.v), performance.now());
      await sleep(50);
    }
  })();
  let lastSeen = -1n;
  const poller = (async () => {
    while (running || committed.size > 0) {
      const { rows } = await side.target.query<{ v: string }>('SELECT v::text FROM marker WHERE id = 2');
      const seen = BigInt(rows[0]!.v);
      if (seen > lastSeen) {
        const now = performance.now();
        for (const [value, at] of committed) {
          if (value <= seen) {
            if (lastSeen >= 0n) lags.push(now - at);
            committed.delete(value);
          }
        }
        lastSeen = seen;
      }
      if (!running && committed.size > 0 && performance.now() > stopAt + 60_000) break;
      await sleep(2);
    }
  })();
  const { host, port, username, password } = source.connection;
  const pgbench = spawn(
    'pgbench',
    ['-n', '-M', 'prepared', '-c', '8', '-j', '2', '-R', String(TPS), '-T', String(PGBENCH_SECONDS), '-h', host, '-p', String(port), '-U', username, 'bench'],
    { env: { ...process.env, PGPASSWORD: password }, stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let output = '';
  pgbench.stdout.on('data', (chunk) => (output += chunk));
  pgbench.stderr.on('data', (chunk) => (output += chunk));
  const code = await new Promise<number | null>((resolve) => pgbench.on('exit', resolve));
  running = false;
  stopAt = performance.now();
  await Promise.all([prober, poller]);
  if (code !== 0) throw new Error(`${side.label}: pgbench failed:\n${output}`);
  const tps = Number(/tps = ([\d.]+)/.exec(output)?.[1] ?? 'NaN');
  lags.sort((a, b) => a - b);
  const at = (q: number) => lags[Math.min(lags.length - 1, Math.floor(q * lags.length))] ?? NaN;
  return { p50: at(0.5), p99: at(0.99), max: lags.at(-1) ?? NaN, samples: lags.length, tps };
}

interface Figures {
  update: number;
  insert: number;
  deleteNoPk: number;
  lag: Awaited<ReturnType<typeof lagUnderPgbench>>;
}

async function measure(side: Side, source: LocalCluster): Promise<Figures> {
  const say = (what: string, { seconds, statementSeconds, sentSeconds }: Applied) =>
    console.log(
      `  ${side.label.padEnd(8)} ${what.padEnd(34)} ${seconds.toFixed(2).padStart(8)} s` +
        `   (statement ${statementSeconds.toFixed(2)} s on the source; all decoded and sent ${sentSeconds.toFixed(2)} s after commit)`,
    );
  const update = await commitToApplied(side, `UPDATE accounts SET abalance = abalance + 1`);
  say(`UPDATE of ${ROWS} rows`, update);
  await commitToApplied(side, 'TRUNCATE inserted'); // the other side's run filled it
  const insert = await commitToApplied(side, `INSERT INTO inserted SELECT aid, bid, abalance, filler FROM accounts`);
  say(`INSERT of ${ROWS} rows`, insert);
  // Rows spread over the whole table, as deletes usually are (not its first pages).
  const deleteNoPk = await commitToApplied(side, `DELETE FROM nopk WHERE ctid IN (SELECT ctid FROM nopk ORDER BY md5(v || at::text) LIMIT ${DELETE_ROWS})`);
  say(`DELETE of ${DELETE_ROWS} rows, no primary key`, deleteNoPk);
  const { rows: slots } = await side.source.query(
    `SELECT slot_name, spill_txns, spill_bytes, stream_txns, stream_count, stream_bytes FROM pg_stat_replication_slots`,
  );
  for (const slot of slots) console.log(`  ${side.label.padEnd(8)} slot ${slot.slot_name}: spilled ${slot.spill_txns} tx (${slot.spill_bytes} B), streamed ${slot.stream_txns} tx in ${slot.stream_count} blocks (${slot.stream_bytes} B)`);
  const lag = await lagUnderPgbench(side, source);
  console.log(
    `  ${side.label.padEnd(8)} lag under pgbench -R ${TPS} (${lag.tps.toFixed(0)} tps)   p50 ${lag.p50.toFixed(0)} ms · p99 ${lag.p99.toFixed(0)} ms · max ${lag.max.toFixed(0)} ms (${lag.samples} probes)`,
  );
  return { update: update.seconds, insert: insert.seconds, deleteNoPk: deleteNoPk.seconds, lag };
}

/**
 * The target running the same statements itself (then rolling back): the floor under any
 * applier's commit-to-applied time, which also pays for decoding on the source.
 */
async function targetFloor(target: LocalCluster): Promise<void> {
  const client = await target.connect('native');
  const timed = async (sql: string) => {
    await client.query('BEGIN');
    const started = performance.now();
    await client.query(sql);
    const seconds = (performance.now() - started) / 1000;
    await client.query('ROLLBACK');
    return seconds;
  };
  try {
    const update = await timed('UPDATE accounts SET abalance = abalance + 1');
    const insert = await timed('INSERT INTO inserted SELECT aid, bid, abalance, filler FROM accounts');
    console.log(`  target   UPDATE / INSERT of ${ROWS} rows run on the target itself: ${update.toFixed(2)} s / ${insert.toFixed(2)} s (the floor for any applier)`);
  } finally {
    await client.end();
  }
}

/**
 * The source decoding the same statements alone, after commit, into pgoutput and nowhere
 * (pg_logical_slot_get_binary_changes): what a consumer that waits for the commit pays before
 * it can apply anything, native or pgferry. A database of its own, so neither side sees it.
 */
async function sourceDecodeFloor(source: LocalCluster): Promise<void> {
  await source.sql('CREATE DATABASE floor');
  const client = await source.connect('floor');
  try {
    await client.query(`${ACCOUNTS_SQL}
      INSERT INTO accounts SELECT a, (a - 1) / 100000 + 1, 0, '' FROM generate_series(1, ${ROWS}) a;
      CREATE PUBLICATION floor_pub FOR TABLE accounts, inserted`);
    await client.query("SELECT pg_create_logical_replication_slot('floor_slot', 'pgoutput')");
    const decode = async (sql: string) => {
      await client.query(sql);
      const started = performance.now();
      await client.query(
        "SELECT count(*) FROM pg_logical_slot_get_binary_changes('floor_slot', NULL, NULL, 'proto_version', '1', 'publication_names', 'floor_pub')",
      );
      return (performance.now() - started) / 1000;
    };
    const update = await decode('UPDATE accounts SET abalance = abalance + 1');
    const insert = await decode('INSERT INTO inserted SELECT aid, bid, abalance, filler FROM accounts');
    console.log(`  source   UPDATE / INSERT of ${ROWS} rows decoded alone after commit: ${update.toFixed(2)} s / ${insert.toFixed(2)} s (what a consumer waiting for the commit pays first)`);
    await client.query("SELECT pg_drop_replication_slot('floor_slot')");
  } finally {
    await client.end();
  }
  await source.sql('DROP DATABASE floor');
}

async function native(source: LocalCluster, target: LocalCluster): Promise<Figures> {
  await copyForNative(source, target);
  await targetFloor(target);
  await sourceDecodeFloor(source);
  await source.sql(`CREATE PUBLICATION native_pub FOR TABLE ${TABLES.join(', ')}`, 'bench');
  await target.sql(
    `CREATE SUBSCRIPTION native_sub CONNECTION '${source.uri('bench')}' PUBLICATION native_pub WITH (copy_data = false)`,
    'native',
  );
  const side: Side = { label: 'native', source: await source.connect('bench'), target: await target.connect('native') };
  try {
    // The subscription is live once its apply worker streams.
    for (let i = 0; ; i++) {
      const { rows } = await side.target.query("SELECT 1 FROM pg_stat_subscription WHERE subname = 'native_sub' AND pid IS NOT NULL");
      if (rows.length > 0) break;
      if (i > 600) throw new Error('the native subscription did not start');
      await sleep(100);
    }
    await commitToApplied(side, 'SELECT 1');
    return await measure(side, source);
  } finally {
    await Promise.all([side.source.end(), side.target.end()]);
    await target.sql('DROP SUBSCRIPTION native_sub', 'native');
    await source.sql('DROP PUBLICATION native_pub', 'bench');
  }
}

async function pgferry(source: LocalCluster, target: LocalCluster, dir: string): Promise<Figures> {
  await target.sql('CREATE DATABASE ferry');
  const run = runLocalWorkflow(
    {
      name: 'bench-cdc',
      mode: 'full+cdc',
      source: { secret: secretFile(dir, 'source', source, 'bench') },
      target: { secret: secretFile(dir, 'target', target, 'ferry') },
      fullLoad: { parallelism: 2 },
      // --track-keys: the comparison on, so the applier records the keys it changes (cutover.finalCompare) and the live comparison runs once caught up.
      compare: { enabled: values['track-keys'] },
      ...(values['batch-rows'] ? { cdc: { batch: { maxRows: Number(values['batch-rows']) } } } : {}),
    },
    { onTaskOutput: ({ stream, line }) => stream === 'stderr' && console.error(line) },
  );
  let ended = false;
  void run.finally(() => (ended = true));
  const side: Side = { label: 'pgferry', source: await source.connect('bench'), target: await target.connect('ferry') };
  try {
    for (;;) {
      if (ended) throw new Error(`pgferry run ended before streaming: ${JSON.stringify(await run)}`);
      const status = await readReplicationStatus(side.target, 'bench-cdc').catch(() => undefined);
      if (status?.streamingSince) break;
      await sleep(200);
    }
    await commitToApplied(side, 'SELECT 1');
    const figures = await measure(side, source);
    await requestCutover(side.target, 'bench-cdc');
    const result = await run;
    if (result.status !== 'SUCCEEDED') throw new Error(`pgferry run failed: ${result.error} ${result.cause}`);
    return figures;
  } finally {
    await Promise.all([side.source.end(), side.target.end()]);
  }
}

async function main() {
  if (spawnSync('pgbench', ['--version']).status !== 0) throw new Error('pgbench is needed for the lag measurement (apt-get install postgresql-client or postgresql-15).');
  const dir = mkdtempSync(join(tmpdir(), 'pgferry-bench-cdc-'));
  // Test clusters commit asynchronously; a walsender sends only flushed WAL, so that would add up to wal_writer_delay of lag.
  const settings = { shared_buffers: '1GB', max_wal_size: '4GB', checkpoint_timeout: '30min', synchronous_commit: 'on' };
  try {
    console.log(`Starting PostgreSQL 15 (source) and 17 (target); ${ROWS} rows, no-PK table of ${NOPK_ROWS} rows, pgbench scale ${PGBENCH_SCALE} at ${TPS} tps for ${PGBENCH_SECONDS} s.`);
    const [source, target] = await startClusters([
      { major: 15, label: 'bench-cdc-source', settings },
      { major: 17, label: 'bench-cdc-target', settings },
    ]);
    await generate(source);
    const only = values.only;
    const nativeFigures = only === 'pgferry' ? undefined : await native(source, target);
    await Promise.all([source.sql('CHECKPOINT'), target.sql('CHECKPOINT')]);
    const ferry = only === 'native' ? undefined : await pgferry(source, target, dir);
    if (!nativeFigures || !ferry) return;
    const ratio = (n: number, f: number) => `${(n / f).toFixed(1)}× faster`;
    console.log('\nRatios (native seconds / pgferry seconds; bar: ≥ 3× on each, and pgferry lag p99 ≤ 150 ms):');
    console.log(`  UPDATE ${ROWS} rows            ${ratio(nativeFigures.update, ferry.update)}  (${nativeFigures.update.toFixed(2)} s → ${ferry.update.toFixed(2)} s)`);
    console.log(`  INSERT ${ROWS} rows            ${ratio(nativeFigures.insert, ferry.insert)}  (${nativeFigures.insert.toFixed(2)} s → ${ferry.insert.toFixed(2)} s)`);
    console.log(`  DELETE ${DELETE_ROWS} rows, no PK    ${ratio(nativeFigures.deleteNoPk, ferry.deleteNoPk)}  (${nativeFigures.deleteNoPk.toFixed(2)} s → ${ferry.deleteNoPk.toFixed(2)} s)`);
    console.log(`  lag p99 at ${TPS} tps          native ${nativeFigures.lag.p99.toFixed(0)} ms, pgferry ${ferry.lag.p99.toFixed(0)} ms (p50 ${nativeFigures.lag.p50.toFixed(0)} / ${ferry.lag.p50.toFixed(0)} ms)`);
  } finally {
    await stopAllClusters();
    rmSync(dir, { recursive: true, force: true });
  }
}

await main();

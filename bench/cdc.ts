/**
 * `npm run bench:cdc [-- --rows 1000000 --nopk-rows 100000 --delete-rows 20000 --tps 2000 --seconds 20 --track-keys]`
 * `npm run bench:cdc -- --backlog 60 [--first pgferry]`: catch-up after a pause (see `backlog`).
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
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { parseArgs } from 'node:util';
import type pg from 'pg';
import { from as copyFrom, to as copyTo } from 'pg-copy-streams';
import { readReplicationStatus, requestCutover } from '../engine/control/index.js';
import { STREAMER_APPLICATION_NAME } from '../engine/cutover/index.js';
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
    backlog: { type: 'string' },
    first: { type: 'string', default: 'native' },
  },
});
const BACKLOG_SECONDS = values.backlog === undefined ? undefined : Number(values.backlog);
// The catch-up measurement needs only the pgbench tables.
const ROWS = BACKLOG_SECONDS === undefined ? Number(values.rows) : 0;
const NOPK_ROWS = BACKLOG_SECONDS === undefined ? Number(values['nopk-rows']) : 0;
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

/** A consumer streaming from the source: its side, and how to end it. */
interface Consumer {
  side: Side;
  /** The process that consumes the stream (the native apply worker, pgferry's CDC task). */
  pid: () => Promise<number>;
  /** The consumer's walsender's application_name on the source. */
  walsender: string;
  end: () => Promise<void>;
}

/** Waits until the consumer applies a marker committed now (it is then streaming). */
async function streaming(side: Side): Promise<void> {
  await commitToApplied(side, 'SELECT 1');
}

/** The native subscription on the target database `native` (copyForNative made it). */
async function startNative(source: LocalCluster, target: LocalCluster): Promise<Consumer> {
  await source.sql(`CREATE PUBLICATION native_pub FOR TABLE ${TABLES.join(', ')}`, 'bench');
  await target.sql(
    `CREATE SUBSCRIPTION native_sub CONNECTION '${source.uri('bench')}' PUBLICATION native_pub WITH (copy_data = false)`,
    'native',
  );
  const side: Side = { label: 'native', source: await source.connect('bench'), target: await target.connect('native') };
  const pid = async () => {
    for (let i = 0; ; i++) {
      const { rows } = await side.target.query<{ pid: number }>("SELECT pid FROM pg_stat_subscription WHERE subname = 'native_sub' AND relid IS NULL AND pid IS NOT NULL");
      if (rows[0]) return rows[0].pid;
      if (i > 600) throw new Error('the native subscription did not start');
      await sleep(100);
    }
  };
  await pid();
  await streaming(side);
  return {
    side,
    pid,
    walsender: 'native_sub',
    end: async () => {
      await Promise.all([side.source.end(), side.target.end()]);
      await target.sql('DROP SUBSCRIPTION native_sub', 'native');
      await source.sql('DROP PUBLICATION native_pub', 'bench');
    },
  };
}

async function native(source: LocalCluster, target: LocalCluster): Promise<Figures> {
  await copyForNative(source, target);
  await targetFloor(target);
  await sourceDecodeFloor(source);
  const consumer = await startNative(source, target);
  try {
    return await measure(consumer.side, source);
  } finally {
    await consumer.end();
  }
}

const MIGRATION = 'bench-cdc';

async function startPgferry(source: LocalCluster, target: LocalCluster, dir: string): Promise<Consumer> {
  await target.sql('CREATE DATABASE ferry');
  let cdcTask: number | undefined;
  const run = runLocalWorkflow(
    {
      name: MIGRATION,
      mode: 'full+cdc',
      source: { secret: secretFile(dir, 'source', source, 'bench') },
      target: { secret: secretFile(dir, 'target', target, 'ferry') },
      fullLoad: { parallelism: 2 },
      // --track-keys: the comparison on, so the applier records the keys it changes (cutover.finalCompare) and the live comparison runs once caught up.
      compare: { enabled: values['track-keys'] },
      // A consumer paused for the catch-up measurement sends no heartbeat: that is no reason to restart it.
      cdc: { heartbeatTimeoutSeconds: 3600, ...(values['batch-rows'] ? { batch: { maxRows: Number(values['batch-rows']) } } : {}) },
    },
    {
      onTaskOutput: ({ stream, line }) => stream === 'stderr' && console.error(line),
      onTaskStarted: ({ task, pid }) => {
        if (task === 'Replicate') cdcTask = pid;
      },
    },
  );
  let ended = false;
  void run.finally(() => (ended = true));
  const side: Side = { label: 'pgferry', source: await source.connect('bench'), target: await target.connect('ferry') };
  for (;;) {
    if (ended) throw new Error(`pgferry run ended before streaming: ${JSON.stringify(await run)}`);
    const status = await readReplicationStatus(side.target, MIGRATION).catch(() => undefined);
    if (status?.streamingSince) break;
    await sleep(200);
  }
  await streaming(side);
  return {
    side,
    pid: async () => cdcTask ?? Promise.reject(new Error('pgferry has no CDC task running')),
    walsender: STREAMER_APPLICATION_NAME,
    end: async () => {
      try {
        await requestCutover(side.target, MIGRATION);
        const result = await run;
        if (result.status !== 'SUCCEEDED') throw new Error(`pgferry run failed: ${result.error} ${result.cause}`);
      } finally {
        await Promise.all([side.source.end(), side.target.end()]);
      }
    },
  };
}

async function pgferry(source: LocalCluster, target: LocalCluster, dir: string): Promise<Figures> {
  const consumer = await startPgferry(source, target, dir);
  let figures: Figures | undefined;
  try {
    figures = await measure(consumer.side, source);
  } finally {
    await consumer.end();
  }
  return figures;
}

/**
 * Catch-up (`--backlog SECONDS`): both consumers stream, then both are paused (their processes
 * stopped with SIGSTOP, so each walsender fills its socket and waits, as for a consumer busy
 * elsewhere), a slot for the decoding floor is created at that point, and pgbench writes at full
 * speed for SECONDS. Then the floor is measured (pg_logical_slot_get_binary_changes of the same
 * backlog, decoding alone), and each consumer is let go alone (SIGCONT) until it has applied a
 * marker committed after the backlog. The bytes each walsender had sent before it was let go
 * are shown: what it had decoded ahead while paused.
 */
async function backlog(source: LocalCluster, target: LocalCluster, dir: string, seconds: number): Promise<void> {
  await copyForNative(source, target);
  const consumers = { native: await startNative(source, target), pgferry: await startPgferry(source, target, dir) };
  const probe = await source.connect('bench');
  try {
    const pids = { native: await consumers.native.pid(), pgferry: await consumers.pgferry.pid() };
    for (const pid of Object.values(pids)) process.kill(pid, 'SIGSTOP');
    const { rows: start } = await probe.query<{ lsn: string }>(
      "SELECT lsn::text FROM pg_create_logical_replication_slot('floor_slot', 'pgoutput') AS s(name, lsn)",
    );
    console.log(`Both consumers paused at ${start[0]!.lsn}; pgbench at full speed for ${seconds} s.`);
    const transactions = await pgbenchFullSpeed(source, seconds);
    const { rows: marker } = await probe.query<{ v: string; lsn: string }>(
      'WITH bumped AS (UPDATE marker SET v = v + 1 WHERE id = 1 RETURNING v::text) SELECT v, pg_current_wal_insert_lsn()::text AS lsn FROM bumped',
    );
    const endLsn = marker[0]!.lsn;
    await probe.query('CHECKPOINT');
    const { rows: size } = await probe.query<{ bytes: string }>('SELECT ($1::pg_lsn - $2::pg_lsn)::text AS bytes', [endLsn, start[0]!.lsn]);
    console.log(`  backlog: ${transactions} transactions, ${(Number(size[0]!.bytes) / 1e6).toFixed(1)} MB of WAL`);

    const floorStarted = performance.now();
    const { rows: decoded } = await probe.query<{ n: string }>(
      "SELECT count(*)::text AS n FROM pg_logical_slot_get_binary_changes('floor_slot', $1::pg_lsn, NULL, 'proto_version', '1', 'publication_names', 'native_pub')",
      [endLsn],
    );
    const floor = (performance.now() - floorStarted) / 1000;
    await probe.query("SELECT pg_drop_replication_slot('floor_slot')");
    console.log(`  floor    decoding alone: ${floor.toFixed(2)} s (${decoded[0]!.n} messages), ${(transactions / floor).toFixed(0)} tx/s`);

    const drained: Record<string, number> = {};
    const walsenderCpu: Record<string, number> = {};
    const order = values.first === 'pgferry' ? (['pgferry', 'native'] as const) : (['native', 'pgferry'] as const);
    for (const name of order) {
      const consumer = consumers[name];
      // The processes that work for the drain: the consumer, its walsender, and the target's backends (with native, its apply worker).
      const { rows: sent } = await probe.query<{ pid: number; ahead: string | null }>(
        'SELECT pid, (sent_lsn - $2::pg_lsn)::text AS ahead FROM pg_stat_replication WHERE application_name = $1',
        [consumer.walsender, start[0]!.lsn],
      );
      const walsender = sent[0]!.pid;
      const targetPids = await serverPids(target);
      const cpuBefore = [cpuSeconds([pids[name]]), cpuSeconds([walsender]), cpuSeconds(targetPids)];
      const started = performance.now();
      process.kill(pids[name], 'SIGCONT');
      for (;;) {
        const { rows } = await consumer.side.target.query<{ v: string }>('SELECT v::text FROM marker WHERE id = 1');
        if (BigInt(rows[0]!.v) >= BigInt(marker[0]!.v)) break;
        if (performance.now() - started > 1_800_000) throw new Error(`${name}: not drained after 30 minutes`);
        await sleep(10);
      }
      drained[name] = (performance.now() - started) / 1000;
      const cpu = [cpuSeconds([pids[name]]), cpuSeconds([walsender]), cpuSeconds(targetPids)].map((after, i) => after - cpuBefore[i]!);
      walsenderCpu[name] = cpu[1]!;
      const ahead = Number(sent[0]?.ahead ?? 0);
      console.log(
        `  ${name.padEnd(8)} drained alone: ${drained[name]!.toFixed(2)} s, ${(transactions / drained[name]!).toFixed(0)} tx/s` +
          ` (its walsender had sent ${(ahead / 1e6).toFixed(1)} MB of the backlog while it was paused)\n` +
          `           CPU meanwhile: ${name === 'native' ? 'apply worker' : 'pgferry process'} ${cpu[0]!.toFixed(2)} s, its walsender ${cpu[1]!.toFixed(2)} s, target backends ${cpu[2]!.toFixed(2)} s${name === 'native' ? ' (apply worker included)' : ''}`,
      );
    }
    await assertSameTables(source, target);
    console.log(`\nCatch-up of ${transactions} transactions (goal: pgferry ≤ 3× the floor and ≥ 3× native):`);
    console.log(`  pgferry / floor    ${(drained.pgferry! / floor).toFixed(2)}×  (${drained.pgferry!.toFixed(2)} s vs ${floor.toFixed(2)} s)`);
    console.log(`  native / pgferry   ${(drained.native! / drained.pgferry!).toFixed(2)}×  (${drained.native!.toFixed(2)} s vs ${drained.pgferry!.toFixed(2)} s)`);
    // The walsender decodes and sends on one core whatever the consumer does: no consumer drains faster than it runs.
    console.log(
      `  walsender floor    ${walsenderCpu.pgferry!.toFixed(2)} s of CPU for pgferry's stream, ${walsenderCpu.native!.toFixed(2)} s for native's: ` +
        `${(walsenderCpu.pgferry! / floor).toFixed(2)}× the decoding floor, ${(drained.native! / walsenderCpu.pgferry!).toFixed(2)}× faster than native at most`,
    );
  } finally {
    await probe.end();
    // A consumer left stopped would hold its slot: let both go before they are ended.
    for (const consumer of Object.values(consumers)) {
      await consumer.pid().then((pid) => process.kill(pid, 'SIGCONT')).catch(() => undefined);
    }
    await consumers.pgferry.end();
    await consumers.native.end();
  }
}

/** CPU seconds (user + system) each process has used so far, by pid: the server's processes and the consumer. */
function cpuSeconds(pids: number[]): number {
  let ticks = 0;
  for (const pid of pids) {
    try {
      // Fields after the command's closing parenthesis: state is field 3, utime 14, stime 15.
      const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
      ticks += Number(fields[11]) + Number(fields[12]);
    } catch {
      // The process has ended: what it used is gone with it.
    }
  }
  return ticks / 100;
}

/** The pids of a cluster's postmaster and all its children (backends, walsenders, apply workers). */
async function serverPids(cluster: LocalCluster): Promise<number[]> {
  const [result] = await cluster.sql("SELECT setting FROM pg_settings WHERE name = 'data_directory'");
  const postmaster = Number(readFileSync(join(result!.rows[0].setting, 'postmaster.pid'), 'utf8').split('\n')[0]);
  const children = readdirSync('/proc').filter((entry) => /^\d+$/.test(entry)).flatMap((entry) => {
    try {
      const fields = readFileSync(`/proc/${entry}/stat`, 'utf8').split(') ')[1]!.split(' ');
      return Number(fields[1]) === postmaster ? [Number(entry)] : [];
    } catch {
      return [];
    }
  });
  return [postmaster, ...children];
}

/** pgbench's TPC-B-like script at full speed for `seconds`; the transactions it committed. */
async function pgbenchFullSpeed(source: LocalCluster, seconds: number): Promise<number> {
  const { host, port, username, password } = source.connection;
  const pgbench = spawn('pgbench', ['-n', '-M', 'prepared', '-c', '8', '-j', '2', '-T', String(seconds), '-h', host, '-p', String(port), '-U', username, 'bench'], {
    env: { ...process.env, PGPASSWORD: password },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  pgbench.stdout.on('data', (chunk) => (output += chunk));
  pgbench.stderr.on('data', (chunk) => (output += chunk));
  const code = await new Promise<number | null>((resolve) => pgbench.on('exit', resolve));
  if (code !== 0) throw new Error(`pgbench failed:\n${output}`);
  return Number(/number of transactions actually processed: (\d+)/.exec(output)?.[1] ?? 'NaN');
}

/** Every table of the measurement equal on both targets and the source (md5 of the rows in a fixed order). */
async function assertSameTables(source: LocalCluster, target: LocalCluster): Promise<void> {
  const digest = async (cluster: LocalCluster, database: string) => {
    const client = await cluster.connect(database);
    try {
      const result: string[] = [];
      for (const table of TABLES) {
        const { rows } = await client.query<{ d: string }>(`SELECT md5(coalesce(string_agg(t::text, E'\\n' ORDER BY t::text), '')) AS d FROM ${table} t`);
        result.push(`${table} ${rows[0]!.d}`);
      }
      return result.join('\n');
    } finally {
      await client.end();
    }
  };
  const expected = await digest(source, 'bench');
  for (const database of ['native', 'ferry']) {
    if ((await digest(target, database)) !== expected) throw new Error(`the ${database} target differs from the source after the catch-up`);
  }
  console.log('  both targets equal the source (every table)');
}

async function main() {
  if (spawnSync('pgbench', ['--version']).status !== 0) throw new Error('pgbench is needed for the lag measurement (apt-get install postgresql-client or postgresql-15).');
  const dir = mkdtempSync(join(tmpdir(), 'pgferry-bench-cdc-'));
  // Test clusters commit asynchronously; a walsender sends only flushed WAL, so that would add up to wal_writer_delay of lag.
  // Catch-up: a consumer paused for the measurement sends no status and receives nothing, so
  // neither the walsender nor native's apply worker may time the other out (a restarted worker
  // would add its restart to native's drain); and no autovacuum (of pgbench's dead rows) may run
  // during one drain and not the other.
  const backlogSettings: Record<string, string> = BACKLOG_SECONDS !== undefined ? { wal_sender_timeout: '0', wal_receiver_timeout: '0', autovacuum: 'off' } : {};
  const settings = { shared_buffers: '1GB', max_wal_size: '4GB', checkpoint_timeout: '30min', synchronous_commit: 'on', ...backlogSettings };
  try {
    console.log(`Starting PostgreSQL 15 (source) and 17 (target); ${ROWS} rows, no-PK table of ${NOPK_ROWS} rows, pgbench scale ${PGBENCH_SCALE} at ${TPS} tps for ${PGBENCH_SECONDS} s.`);
    const [source, target] = await startClusters([
      { major: 15, label: 'bench-cdc-source', settings },
      { major: 17, label: 'bench-cdc-target', settings },
    ]);
    await generate(source);
    if (BACKLOG_SECONDS !== undefined) return await backlog(source, target, dir, BACKLOG_SECONDS);
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

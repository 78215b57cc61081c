/**
 * Exactly-once at the two crash points that matter, not at random delays: the streamer is
 * SIGKILLed (1) while its apply transaction is open on the target, held there by a row lock,
 * and (2) after the target committed a checkpoint but before the slot was acknowledged (a test
 * hook stops the process exactly there, engine/cdc/crash-point.ts). Both under the workload's
 * writes, with a keyless REPLICA IDENTITY FULL table and a TOASTed column; the target must end
 * identical to the source, and the transactions the slot still holds must not be applied twice.
 */
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { migrationState, readReplicationStatus, requestCutover } from '../../engine/control/index.js';
import { STOP_AFTER_CHECKPOINT_ENV } from '../../engine/cdc/crash-point.js';
import { parseLsn } from '../../engine/cdc/pgoutput.js';
import { startClusters, type LocalCluster } from '../../local/dev/cluster.js';
import { createWorkloadSchema, startWorkload, type RunningWorkload } from '../../local/dev/workload.js';
import { runLocalWorkflow, type LocalRunResult } from '../../local/runner/index.js';
import { scratchDir } from '../support/clusters.js';
import { databaseHashes } from '../support/equality.js';
import { waitFor as waitUntil } from '../support/wait.js';

let source: LocalCluster;
let target: LocalCluster;
const scratch = scratchDir('crash');
const SIZE = { scale: 1, accountsPerScale: 5000 };
/** A full load, a streamer restart (a heartbeat timeout plus a task start) and a cutover, on a slow machine. */
const TEST_TIMEOUT = 300_000;

beforeAll(async () => {
  [source, target] = await startClusters([
    { major: 15, label: 'crash15' },
    { major: 17, label: 'crash17' },
  ]);
  // To read where a source transaction's commit record is (in the postgres database: no migration sees it).
  await source.sql('CREATE EXTENSION pg_walinspect');
});

afterAll(async () => {
  await Promise.all([source, target].map((c) => c?.stop()));
  scratch.remove();
});

/** A streamer restart takes a heartbeat timeout plus a task start: allow for a slow machine. */
const waitFor = <T>(what: string, probe: () => Promise<T | undefined | false | null>) => waitUntil(what, probe, 120_000, 100);

async function createDatabase(database: string) {
  await source.sql(`CREATE DATABASE ${database}`);
  await target.sql(`CREATE DATABASE ${database}`);
  const setup = await source.connect(database);
  try {
    // pgbench's tables plus a keyless REPLICA IDENTITY FULL table with duplicate rows
    // (workload_events) and 10 kB TOASTed bodies most updates leave unchanged (workload_docs).
    await createWorkloadSchema(setup, SIZE);
  } finally {
    await setup.end();
  }
}

const writeLoad = (database: string, seed: number): RunningWorkload =>
  startWorkload(() => source.connect(database), { clients: 2, ratePerSecond: 100, seed, ...SIZE });

/** A full+cdc run of the workflow, with the pids of its Replicate task processes in start order. */
function startRun(name: string, database: string, taskEnvironment?: NodeJS.ProcessEnv) {
  const streamers: number[] = [];
  let result: LocalRunResult | undefined;
  const spec = {
    name,
    mode: 'full+cdc',
    source: { secret: scratch.secretFor(`${name}-source`, source), database },
    target: { secret: scratch.secretFor(`${name}-target`, target), database },
    fullLoad: { parallelism: 2 },
    cdc: { heartbeatTimeoutSeconds: 5 },
  };
  const run = runLocalWorkflow(spec, { taskEnvironment, onTaskStarted: ({ task, pid }) => task === 'Replicate' && streamers.push(pid) }).then(
    (r) => (result = r),
  );
  return { streamers, run, result: () => result };
}

/** Fails at once, saying why, when the run paused or failed instead of going on. */
async function expectGoingOn(control: pg.Client, name: string): Promise<void> {
  const state = await migrationState(control, name);
  if (state?.phase === 'paused' || state?.phase === 'failed') throw new Error(`the run ${state.phase}: ${state.error}`);
}

/** The streamer started after `restarts` restarts is streaming. */
const streamingAfter = (control: pg.Client, name: string, restarts: number) =>
  waitFor(`streamer #${restarts + 1} to stream`, async () => {
    const status = await readReplicationStatus(control, name);
    if (status) await expectGoingOn(control, name);
    return status?.streamingSince && status.restarts >= restarts ? status : undefined;
  });

/** Waits until the target holds exactly the source's rows (the source is quiet meanwhile). */
const caughtUp = (database: string) =>
  waitFor('the target to equal the source', async () => JSON.stringify(await databaseHashes(target, database)) === JSON.stringify(await databaseHashes(source, database)));

async function slotConfirmedLsn(name: string): Promise<string> {
  const [rows] = await source.sql(`SELECT confirmed_flush_lsn::text AS lsn FROM pg_replication_slots WHERE slot_name = 'pgferry_${name.replace(/-/g, '_')}'`);
  return rows!.rows[0].lsn;
}

async function appliedCheckpoint(control: pg.Client, name: string) {
  const { rows } = await control.query<{ lsn: string; transactions: string }>(
    'SELECT applied_lsn::text AS lsn, transactions_applied AS transactions FROM pgferry.replication WHERE migration = $1',
    [name],
  );
  return { lsn: rows[0]!.lsn, transactions: Number(rows[0]!.transactions) };
}

/**
 * Runs `statements` in one source transaction and returns where its commit record starts: the
 * slot must not confirm past it before the target has committed the transaction (it would be lost).
 */
async function commitRecordOf(database: string, statements: string[]): Promise<bigint> {
  const writer = await source.connect(database);
  let from: string;
  let xid: string;
  try {
    from = (await writer.query<{ lsn: string }>('SELECT pg_current_wal_flush_lsn()::text AS lsn')).rows[0]!.lsn;
    await writer.query('BEGIN');
    for (const statement of statements) await writer.query(statement);
    xid = (await writer.query<{ xid: string }>('SELECT pg_current_xact_id()::text AS xid')).rows[0]!.xid;
    await writer.query('COMMIT');
    // pg_walinspect reads only flushed WAL (the test clusters may commit asynchronously).
    const { rows } = await writer.query<{ lsn: string }>('SELECT pg_current_wal_insert_lsn()::text AS lsn');
    await waitFor('the commit to be flushed', async () => {
      const { rows: flushed } = await writer.query<{ done: boolean }>('SELECT pg_current_wal_flush_lsn() >= $1::pg_lsn AS done', [rows[0]!.lsn]);
      return flushed[0]!.done;
    });
  } finally {
    await writer.end();
  }
  const [records] = await source.sql(
    `SELECT start_lsn::text AS lsn FROM pg_get_wal_records_info('${from}', pg_current_wal_flush_lsn())
      WHERE resource_manager = 'Transaction' AND record_type = 'COMMIT' AND xid::text = '${xid}'`,
  );
  expect(records!.rows).toHaveLength(1);
  return parseLsn(records!.rows[0].lsn);
}

/** The process state letter of /proc/PID/stat ('T' once stopped). */
const processState = (pid: number) => readFileSync(`/proc/${pid}/stat`, 'utf8').replace(/^.*\) /s, '')[0];

/** Ends the run: the load stops, cutover drains, and the target must equal the source. */
async function cutOverAndCompare(control: pg.Client, name: string, database: string, run: ReturnType<typeof startRun>, load: RunningWorkload) {
  const stats = await load.stop();
  expect(stats.transactions).toBeGreaterThan(0);
  expect(await requestCutover(control, name)).toBe(true);
  await run.run;
  expect(run.result(), JSON.stringify(run.result())).toMatchObject({ status: 'SUCCEEDED' });
  const sourceHashes = await databaseHashes(source, database);
  expect(Object.keys(sourceHashes)).toContain('public.workload_events');
  expect(await databaseHashes(target, database)).toEqual(sourceHashes);
}

describe('crash points of the streamer', () => {
  it('a streamer killed inside its open apply transaction (held by a row lock) leaves nothing of it, and its successor applies it once', async () => {
    const database = 'heldapply';
    const name = 'crash-held';
    await createDatabase(database);
    let load = writeLoad(database, 11);
    const run = startRun(name, database);
    const control = await target.connect(database);
    const blocker = await target.connect(database);
    try {
      await streamingAfter(control, name, 0);
      await load.stop();
      await caughtUp(database);
      // The next batch starts with a keyless insert and then updates a document the blocker has locked:
      // the applier has written to the target and waits, inside its transaction.
      await blocker.query('BEGIN');
      await blocker.query('SELECT 1 FROM workload_docs WHERE id = 1 FOR UPDATE');
      const heldCommit = await commitRecordOf(database, [
        `INSERT INTO workload_events VALUES ('held', '{"n": 1}', '2026-01-01'), ('held', '{"n": 1}', '2026-01-01')`,
        'UPDATE workload_docs SET version = version + 1 WHERE id = 1',
        `INSERT INTO workload_docs SELECT 1000001, string_agg(md5(g::text), ''), 1, now() FROM generate_series(1, 400) g`,
      ]);
      const { pid: blockerPid } = (await blocker.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0]!;
      const held = await waitFor('the applier to wait for the row lock inside its transaction', async () => {
        const { rows } = await control.query(
          `SELECT pid, state, wait_event_type, backend_xid IS NOT NULL AS wrote, xact_start IS NOT NULL AS in_transaction
             FROM pg_stat_activity WHERE application_name LIKE 'pgferry-%' AND $1 = ANY (pg_blocking_pids(pid))`,
          [blockerPid],
        );
        return rows[0];
      });
      expect(held).toMatchObject({ state: 'active', wait_event_type: 'Lock', wrote: true, in_transaction: true });
      // More writes queue up behind the held batch.
      load = writeLoad(database, 12);
      await waitFor('the workload to write', async () => load.stats().transactions > 20);

      expect(run.streamers).toHaveLength(1);
      process.kill(run.streamers[0]!, 'SIGKILL');
      await blocker.query('COMMIT');
      // The slot was not told about the transaction the target has not committed.
      expect(parseLsn(await slotConfirmedLsn(name))).toBeLessThanOrEqual(heldCommit);
      // The killed streamer's transaction never commits: none of its rows are visible.
      const [events] = await target.sql("SELECT count(*)::int AS n FROM workload_events WHERE kind = 'held'", database);
      expect(events!.rows[0].n).toBe(0);

      await streamingAfter(control, name, 1);
      const applied = await waitFor('the held transaction on the target', async () => {
        await expectGoingOn(control, name);
        const [rows] = await target.sql("SELECT count(*)::int AS n FROM workload_events WHERE kind = 'held'", database);
        return rows!.rows[0].n > 0 && (rows!.rows[0].n as number);
      });
      expect(applied).toBe(2);
      await cutOverAndCompare(control, name, database, run, load);
    } finally {
      await load.stop();
      await blocker.end().catch(() => undefined);
      await control.end();
    }
  }, TEST_TIMEOUT);

  it('a streamer killed after the target committed a checkpoint but before the slot was acknowledged: the resent transactions are skipped', async () => {
    const database = 'unacked';
    const name = 'crash-unacked';
    await createDatabase(database);
    const trigger = join(scratch.dir, 'stop-after-checkpoint');
    let load = writeLoad(database, 21);
    const run = startRun(name, database, { [STOP_AFTER_CHECKPOINT_ENV]: trigger });
    const control = await target.connect(database);
    try {
      await streamingAfter(control, name, 0);
      await load.stop();
      await caughtUp(database);
      const before = await appliedCheckpoint(control, name);

      // From now on the source runs exactly these transactions, each with duplicate keyless rows.
      writeFileSync(trigger, '');
      const transactions = 6;
      for (let i = 0; i < transactions; i++) {
        await source.sql(
          `BEGIN;
           INSERT INTO workload_events VALUES ('unacked', '{"i": ${i}}', '2026-01-01'), ('unacked', '{"i": ${i}}', '2026-01-01');
           UPDATE workload_docs SET version = version + 1 WHERE id = ${i + 1};
           COMMIT`,
          database,
        );
      }
      const streamer = run.streamers[0]!;
      await waitFor('the streamer to stop after a checkpoint', async () => !existsSync(trigger) && processState(streamer) === 'T');
      const committed = await appliedCheckpoint(control, name);
      const acknowledged = await slotConfirmedLsn(name);
      // The target holds transactions the slot has not been told about: it will send them again.
      expect(committed.transactions).toBeGreaterThan(before.transactions);
      expect(parseLsn(acknowledged)).toBeLessThan(parseLsn(committed.lsn));
      process.kill(streamer, 'SIGKILL');

      await streamingAfter(control, name, 1);
      await waitFor('the last of those transactions on the target', async () => {
        await expectGoingOn(control, name);
        const [rows] = await target.sql(`SELECT 1 FROM workload_events WHERE kind = 'unacked' AND payload = '{"i": ${transactions - 1}}'`, database);
        return rows!.rows.length > 0;
      });
      // Each source transaction was applied exactly once: none counted twice, no duplicate keyless rows.
      expect((await appliedCheckpoint(control, name)).transactions - before.transactions).toBe(transactions);
      const [events] = await target.sql("SELECT count(*)::int AS n FROM workload_events WHERE kind = 'unacked'", database);
      expect(events!.rows[0].n).toBe(2 * transactions);
      await caughtUp(database);
      // Nothing is sent again, so the new streamer acknowledges them at the walsender's next keepalive.
      await waitFor('the slot to be acknowledged past them', async () => parseLsn(await slotConfirmedLsn(name)) >= parseLsn(committed.lsn));

      load = writeLoad(database, 22);
      await waitFor('the workload to write', async () => load.stats().transactions > 50);
      await cutOverAndCompare(control, name, database, run, load);
    } finally {
      await load.stop();
      await control.end();
    }
  }, TEST_TIMEOUT);
});

/**
 * A failure pauses a CDC migration and keeps its slot; `pgferry resume` goes on from the
 * target's checkpoint without reloading; only `pgferry stop --drop` (or a finish) drops the slot.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { findMigration, migrationState, readReplicationStatus, requestCutover } from '../../engine/control/index.js';
import { startClusters, type LocalCluster } from '../../local/dev/cluster.js';
import { runLocalWorkflow, type LocalRunResult } from '../../local/runner/index.js';
import { RUNNER_ENV } from '../../bin/commands/runner-session.js';
import { runCli } from '../support/cli.js';
import { scratchDir } from '../support/clusters.js';
import { databaseHashes } from '../support/equality.js';
import { waitFor as waitUntil } from '../support/wait.js';

let source: LocalCluster;
let target: LocalCluster;
const scratch = scratchDir('pause');

beforeAll(async () => {
  [source, target] = await startClusters([
    { major: 15, label: 'pause15' },
    { major: 17, label: 'pause17' },
  ]);
});

afterAll(async () => {
  await Promise.all([source, target].map((c) => c?.stop()));
  scratch.remove();
});

const waitFor = <T>(what: string, probe: () => Promise<T | undefined | false | null>) => waitUntil(what, probe, 120_000, 100);

function cdcSpec(name: string, database: string) {
  return {
    name,
    mode: 'full+cdc',
    source: { secret: scratch.secretFor(`${name}-source`, source), database },
    target: { secret: scratch.secretFor(`${name}-target`, target), database },
    fullLoad: { parallelism: 2 },
    cdc: { conflictPolicy: 'error' },
  };
}

async function createDatabase(database: string) {
  await source.sql(`CREATE DATABASE ${database}`);
  await source.sql(
    `CREATE TABLE accounts (id int PRIMARY KEY, balance numeric NOT NULL, note text);
     INSERT INTO accounts SELECT g, g * 1.5, md5(g::text) FROM generate_series(1, 5000) g;
     CREATE TABLE log (at bigint, what text); ALTER TABLE log REPLICA IDENTITY FULL;
     INSERT INTO log SELECT g, 'row ' || g FROM generate_series(1, 2000) g;`,
    database,
  );
  await target.sql(`CREATE DATABASE ${database}`);
}

async function slotsOf(name: string): Promise<string[]> {
  const [rows] = await source.sql(`SELECT slot_name FROM pg_replication_slots WHERE slot_name = 'pgferry_${name.replace(/-/g, '_')}'`);
  return rows!.rows.map((r: { slot_name: string }) => r.slot_name);
}

const relfilenodes = async (database: string) =>
  (await target.sql("SELECT relname, relfilenode FROM pg_class WHERE relname IN ('accounts', 'log') ORDER BY relname", database))[0]!.rows;

async function phaseOf(control: pg.Client, name: string) {
  return (await findMigration(control, name))?.phase;
}

describe('pause and resume', () => {
  it('a conflict pauses the run with its slot kept; fixing the row and resuming goes on without a reload and ends identical', async () => {
    const database = 'conflicted';
    const name = 'pause-conflict';
    await createDatabase(database);
    const spec = cdcSpec(name, database);
    let first: LocalRunResult | undefined;
    const firstRun = runLocalWorkflow(spec).then((r) => (first = r));
    const control = await target.connect(database);
    try {
      await waitFor('the streamer to apply', async () => (await readReplicationStatus(control, name))?.streamingSince);
      const loaded = await relfilenodes(database);
      // A row on the target that the source's next insert collides with.
      await target.sql("INSERT INTO accounts VALUES (900001, 0, 'target only')", database);
      await source.sql("INSERT INTO accounts VALUES (900001, 1, 'source'); UPDATE accounts SET balance = balance + 1 WHERE id <= 100", database);
      await waitFor('the run to pause', async () => (await phaseOf(control, name)) === 'paused');
      const paused = await migrationState(control, name);
      expect(paused!.error).toMatch(/900001|duplicate key|conflict/i);
      expect(await slotsOf(name)).toEqual(['pgferry_pause_conflict']);
      expect(first).toBeUndefined();
      // The source goes on while the run is paused: nothing of it may be lost.
      await source.sql("INSERT INTO log SELECT g, 'while paused ' || g FROM generate_series(1, 500) g; DELETE FROM accounts WHERE id BETWEEN 200 AND 260", database);

      // A new run of the same name is refused, not started over.
      const rerun = await runLocalWorkflow(spec);
      expect(rerun).toMatchObject({ status: 'FAILED', error: 'pgferry.MigrationPaused' });
      expect(await slotsOf(name)).toEqual(['pgferry_pause_conflict']);

      await target.sql('DELETE FROM accounts WHERE id = 900001', database);
      let resumed: LocalRunResult | undefined;
      const resumedRun = runLocalWorkflow({ resume: true, spec }).then((r) => (resumed = r));
      // The paused run hands over and ends.
      await firstRun;
      expect(first).toMatchObject({ status: 'SUCCEEDED' });
      expect((first!.output as { paused: { action: string } }).paused.action).toBe('handed-over');
      await waitFor('the resumed streamer to apply', async () => {
        const state = await migrationState(control, name);
        const status = await readReplicationStatus(control, name);
        return state?.phase === 'replicate' && status?.streamingSince && status.lastError === null;
      });
      await source.sql("INSERT INTO log VALUES (-1, 'after resume')", database);
      await requestCutover(control, name);
      await resumedRun;
      expect(resumed, JSON.stringify(resumed)).toMatchObject({ status: 'SUCCEEDED' });
      expect(await relfilenodes(database)).toEqual(loaded);
    } finally {
      await control.end();
    }
    expect(await databaseHashes(target, database)).toEqual(await databaseHashes(source, database));
    expect(await slotsOf(name)).toEqual([]);
  });

  it('a full+cdc run that pauses during its load resumes: the unfinished table is copied again at a new snapshot, the loaded one kept, and the target ends identical', async () => {
    const database = 'halfloaded';
    const name = 'pause-load';
    await createDatabase(database);
    // The target's accounts refuse one source row: its unit fails, the load cannot finish, and the run pauses.
    await target.sql(
      `CREATE TABLE accounts (id int PRIMARY KEY, balance numeric NOT NULL, note text, CONSTRAINT no_4242 CHECK (id <> 4242));
       CREATE TABLE log (at bigint, what text);`,
      database,
    );
    const spec = { ...cdcSpec(name, database), schema: { existingTables: 'ignore' }, fullLoad: { parallelism: 2, retries: 1 } };
    let first: LocalRunResult | undefined;
    const firstRun = runLocalWorkflow(spec, { retryIntervalOverrides: { CopyWorker: 0 } }).then((r) => (first = r));
    const control = await target.connect(database);
    try {
      await waitFor('the run to pause', async () => (await phaseOf(control, name)) === 'paused');
      expect((await migrationState(control, name))!.error).toMatch(/no_4242|units? not copied|did not finish/);
      expect(await slotsOf(name)).toEqual(['pgferry_pause_load']);
      const loaded = (await relfilenodes(database)).find((r: { relname: string }) => r.relname === 'log');
      // Written while paused, to both tables: the kept table gets them from the stream, the recopied one from its new snapshot or the stream.
      await source.sql("INSERT INTO log VALUES (-5, 'while paused'); UPDATE accounts SET note = 'while paused' WHERE id % 50 = 0; INSERT INTO accounts VALUES (900100, 3, 'new')", database);
      await target.sql('ALTER TABLE accounts DROP CONSTRAINT no_4242', database);

      let resumed: LocalRunResult | undefined;
      const resumedRun = runLocalWorkflow({ resume: true, spec }).then((r) => (resumed = r));
      await firstRun;
      expect((first!.output as { paused: { action: string } }).paused.action).toBe('handed-over');
      await waitFor('the resumed streamer to apply', async () => (await phaseOf(control, name)) === 'replicate' && (await readReplicationStatus(control, name))?.streamingSince);
      await source.sql("INSERT INTO accounts VALUES (900101, 4, 'after resume'); DELETE FROM log WHERE at < 10", database);
      await requestCutover(control, name);
      await resumedRun;
      expect(resumed, JSON.stringify(resumed)).toMatchObject({ status: 'SUCCEEDED' });
      expect((await relfilenodes(database)).find((r: { relname: string }) => r.relname === 'log')).toEqual(loaded);
      const [synced] = await target.sql(`SELECT source_table FROM pgferry.table_sync WHERE migration = '${name}'`, database);
      expect(synced!.rows).toEqual([{ source_table: 'accounts' }]);
    } finally {
      await control.end();
    }
    expect(await databaseHashes(target, database)).toEqual(await databaseHashes(source, database));
    expect(await slotsOf(name)).toEqual([]);
  });

  it('a stopped run pauses with its slot kept; pgferry stop --drop abandons it and drops the slot', async () => {
    const database = 'stopping';
    const name = 'pause-stopped';
    await createDatabase(database);
    const spec = cdcSpec(name, database);
    const specFile = join(scratch.dir, `${name}.json`);
    writeFileSync(specFile, JSON.stringify(spec));
    const stop = new AbortController();
    const run = runLocalWorkflow(spec, { signal: stop.signal });
    const control = await target.connect(database);
    try {
      await waitFor('the streamer to apply', async () => (await readReplicationStatus(control, name))?.streamingSince);
      stop.abort();
      expect((await run).status).toBe('ABORTED');
      expect(await phaseOf(control, name)).toBe('paused');
      expect(await slotsOf(name)).toEqual(['pgferry_pause_stopped']);

      const status = await runCli('status', specFile);
      expect(status.stdout).toMatch(/paused/);
      const cutover = await runCli('cutover', specFile);
      expect(cutover.code).toBe(1);

      const dropped = await runCli('stop', specFile, '--drop');
      expect(dropped.stderr).toBe('');
      expect(dropped.code).toBe(0);
      expect(dropped.stdout).toMatch(/marked failed.*dropped the replication slot/);
      expect(await phaseOf(control, name)).toBe('failed');
      expect(await slotsOf(name)).toEqual([]);
      // An abandoned CDC run does not resume (run in this process as the runner, to read its output).
      process.env[RUNNER_ENV] = '1';
      const resumed = await runCli('resume', specFile).finally(() => delete process.env[RUNNER_ENV]);
      expect(resumed.code).toBe(1);
      expect(resumed.stderr).toMatch(/abandoned/);
    } finally {
      await control.end();
    }
  });
});

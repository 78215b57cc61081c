/**
 * Secrets never leave their secret: a whole CDC migration with distinctive random passwords
 * (paused twice by conflicts, resumed directly and then through the CLI, cut over) is scanned
 * for them everywhere a user or an operator can look: the events of the direct executions
 * (state inputs and outputs), the task processes' output, the CLI's output and progress,
 * `pgferry status`, the report JSON, and every row of the target's control schema. A wrong
 * password's errors must not echo it either.
 */
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RUNNER_ENV } from '../../bin/commands/runner-session.js';
import { migrationState, readReplicationStatus, requestCutover } from '../../engine/control/index.js';
import { buildReport } from '../../engine/report.js';
import { startClusters, type LocalCluster } from '../../local/dev/cluster.js';
import { runLocalWorkflow, type LocalRunOptions } from '../../local/runner/index.js';
import { runCli } from '../support/cli.js';
import { scratchDir } from '../support/clusters.js';
import { databaseHashes } from '../support/equality.js';
import { waitFor as waitUntil } from '../support/wait.js';

let source: LocalCluster;
let target: LocalCluster;
const scratch = scratchDir('secrets');
/** Distinctive and random: any occurrence anywhere is a leak. Hex, so every encoding of it contains it as is. */
const sourcePassword = `srcpw${randomBytes(16).toString('hex')}`;
const targetPassword = `tgtpw${randomBytes(16).toString('hex')}`;
const wrongPassword = `wrongpw${randomBytes(16).toString('hex')}`;

beforeAll(async () => {
  [source, target] = await startClusters([
    { major: 15, label: 'secrets15' },
    { major: 17, label: 'secrets17' },
  ]);
  await source.sql(`CREATE ROLE scan_source LOGIN SUPERUSER PASSWORD '${sourcePassword}'`);
  await target.sql(`CREATE ROLE scan_target LOGIN SUPERUSER PASSWORD '${targetPassword}'`);
});

afterAll(async () => {
  await Promise.all([source, target].map((c) => c?.stop()));
  scratch.remove();
});

const waitFor = <T>(what: string, probe: () => Promise<T | undefined | false | null>) => waitUntil(what, probe, 120_000, 100);

function specOf(name: string, database: string, passwords: { source: string; target: string }) {
  return {
    name,
    mode: 'full+cdc',
    source: { secret: scratch.secretFor(`${name}-source`, source, { username: 'scan_source', password: passwords.source }), database },
    target: { secret: scratch.secretFor(`${name}-target`, target, { username: 'scan_target', password: passwords.target }), database },
    fullLoad: { parallelism: 2 },
    cdc: { conflictPolicy: 'error', heartbeatTimeoutSeconds: 10 },
  };
}

/** Everything the run let anyone see, as text: events and task output lines as they came. */
function recorder() {
  const seen: string[] = [];
  const watchers: LocalRunOptions = {
    onEvent: (event) => seen.push(JSON.stringify(event)),
    onTaskOutput: (line) => seen.push(JSON.stringify(line)),
  };
  return { seen, watchers };
}

/** Copies what this process writes to stderr, where the CLI's progress goes (the run's states, task messages, pauses). */
function captureStderr() {
  const original = process.stderr.write;
  let text = '';
  process.stderr.write = function (this: NodeJS.WriteStream, chunk: string | Uint8Array, ...rest: unknown[]) {
    text += typeof chunk === 'string' ? chunk : Buffer.from(chunk).toString();
    return (original as (...args: unknown[]) => boolean).call(this, chunk, ...rest);
  } as typeof process.stderr.write;
  return { text: () => text, restore: () => void (process.stderr.write = original) };
}

/** Every row of every table and view in the target's control schema, as text. */
async function controlRows(control: pg.Client): Promise<string[]> {
  const { rows: relations } = await control.query<{ name: string }>(
    "SELECT c.relname AS name FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'pgferry' AND c.relkind IN ('r', 'p', 'v', 'm') ORDER BY 1",
  );
  expect(relations.length).toBeGreaterThan(5);
  const texts: string[] = [];
  for (const { name } of relations) {
    const { rows } = await control.query<{ row: string }>(`SELECT r::text AS row FROM pgferry."${name.replace(/"/g, '""')}" r`);
    texts.push(...rows.map((r) => `${name}: ${r.row}`));
  }
  return texts;
}

/** Where the passwords, or their random parts alone, occur (a label per hit); the expected answer is none. */
function leaks(label: string, texts: string[], passwords: string[]): string[] {
  return passwords.flatMap((password) => {
    const random = password.slice(-32);
    return texts.filter((text) => text.includes(random)).map((text) => `${label}: ${text.slice(0, 300)}`);
  });
}

describe('no password in anything a run shows or keeps', () => {
  it('a CDC migration paused twice by conflicts, resumed through the CLI and directly, and cut over shows its passwords nowhere', async () => {
    const database = 'scanned';
    const name = 'secret-scan';
    await source.sql(`CREATE DATABASE ${database}`);
    await source.sql(
      `CREATE TABLE accounts (id int PRIMARY KEY, balance numeric NOT NULL, note text);
       INSERT INTO accounts SELECT g, g * 1.5, md5(g::text) FROM generate_series(1, 2000) g;
       CREATE TABLE log (at bigint, what text); ALTER TABLE log REPLICA IDENTITY FULL;
       INSERT INTO log SELECT g, 'row ' || g FROM generate_series(1, 500) g;`,
      database,
    );
    await target.sql(`CREATE DATABASE ${database}`);
    const spec = specOf(name, database, { source: sourcePassword, target: targetPassword });
    const specFile = scratch.writeJson(`${name}.json`, spec);
    const reportFile = join(scratch.dir, `${name}.report.json`);
    const direct = recorder();
    const firstRun = runLocalWorkflow(spec, direct.watchers);
    const outputs: string[] = [];
    const control = await target.connect(database);
    /** A conflict on `id` pauses the run; `pgferry status` then says so. */
    const pauseOnConflict = async (id: number) => {
      await target.sql(`INSERT INTO accounts VALUES (${id}, 0, 'target only')`, database);
      await source.sql(`INSERT INTO accounts VALUES (${id}, 1, 'source'); UPDATE accounts SET balance = balance + 1 WHERE id <= 50`, database);
      await waitFor('the run to pause', async () => (await migrationState(control, name))?.phase === 'paused');
      const status = await runCli('status', specFile);
      expect(status.stdout).toMatch(/paused/);
      outputs.push(status.stdout, status.stderr);
      await target.sql(`DELETE FROM accounts WHERE id = ${id}`, database);
    };
    const streamingAgain = () =>
      waitFor('the resumed streamer to apply', async () => {
        const state = await migrationState(control, name);
        const status = await readReplicationStatus(control, name);
        return state?.phase === 'replicate' && status?.streamingSince && status.lastError === null;
      });
    let progress: ReturnType<typeof captureStderr> | undefined;
    try {
      await waitFor('the streamer to apply', async () => (await readReplicationStatus(control, name))?.streamingSince);
      await pauseOnConflict(900001);

      // A direct resume (its state inputs and outputs recorded), paused again.
      const secondRun = runLocalWorkflow({ resume: true, spec }, direct.watchers);
      await streamingAgain();
      await source.sql("INSERT INTO log VALUES (-1, 'after resume'); DELETE FROM accounts WHERE id BETWEEN 100 AND 120", database);
      const live = await runCli('status', specFile);
      outputs.push(live.stdout, live.stderr);
      await pauseOnConflict(900002);

      // `pgferry resume` as the runner, in this process, to the end: its output, progress and report are captured.
      process.env[RUNNER_ENV] = '1';
      progress = captureStderr();
      const cliRun = runCli('resume', specFile, '--report', reportFile).finally(() => delete process.env[RUNNER_ENV]);
      await streamingAgain();
      await source.sql("INSERT INTO log VALUES (-2, 'after the second resume'); UPDATE accounts SET note = 'late' WHERE id % 7 = 0", database);
      expect(await requestCutover(control, name)).toBe(true);
      const cli = await cliRun;
      progress.restore();
      outputs.push(cli.stdout, cli.stderr, progress.text());
      expect(cli.code, cli.stderr).toBe(0);
      expect(progress.text()).toMatch(/Cutover/);
      const handedOver = [await firstRun, await secondRun];
      expect(handedOver.map((r) => r.status)).toEqual(['SUCCEEDED', 'SUCCEEDED']);
      outputs.push(JSON.stringify(handedOver));

      const done = await runCli('status', specFile);
      expect(done.stdout).toMatch(/done/);
      outputs.push(done.stdout, done.stderr);
      const report = readFileSync(reportFile, 'utf8');
      const built = JSON.stringify(await buildReport(control, name));
      const rows = await controlRows(control);

      // The scan sees what it should: the run's name is in each place it searches.
      for (const texts of [direct.seen, outputs, [report], [built], rows]) expect(texts.join('\n')).toContain(name);
      expect(direct.seen.join('\n')).toMatch(/"Paused"/);
      expect(rows.join('\n')).toMatch(/900002|duplicate key|conflict/i);
      const passwords = [sourcePassword, targetPassword];
      expect([
        ...leaks('event or task output', direct.seen, passwords),
        ...leaks('CLI output', outputs, passwords),
        ...leaks('report file', [report], passwords),
        ...leaks('buildReport', [built], passwords),
        ...leaks('control row', rows, passwords),
      ]).toEqual([]);
    } finally {
      progress?.restore();
      delete process.env[RUNNER_ENV];
      await control.end();
    }
    expect(await databaseHashes(target, database)).toEqual(await databaseHashes(source, database));
  });

  it('a wrong password fails with a readable error that does not echo it', async () => {
    const database = 'badlogin';
    const name = 'secret-wrong';
    await source.sql(`CREATE DATABASE ${database}`);
    await source.sql('CREATE TABLE t (id int PRIMARY KEY)', database);
    await target.sql(`CREATE DATABASE ${database}`);
    const wrongSource = specOf(name, database, { source: wrongPassword, target: targetPassword });
    const precheck = await runCli('precheck', scratch.writeJson(`${name}-source.json`, wrongSource));
    expect(precheck.code).not.toBe(0);
    expect(`${precheck.stdout}${precheck.stderr}`).toMatch(/password authentication failed/);
    const wrongTarget = specOf(`${name}-t`, database, { source: sourcePassword, target: wrongPassword });
    const precheckTarget = await runCli('precheck', scratch.writeJson(`${name}-target.json`, wrongTarget));
    expect(precheckTarget.code).not.toBe(0);
    expect(`${precheckTarget.stdout}${precheckTarget.stderr}`).toMatch(/password authentication failed/);

    const run = recorder();
    const result = await runLocalWorkflow(wrongSource, run.watchers);
    expect(result.status).toBe('FAILED');
    expect(`${result.error} ${result.cause}`).toMatch(/password authentication failed/);
    const texts = [precheck.stdout, precheck.stderr, precheckTarget.stdout, precheckTarget.stderr, JSON.stringify(result), ...run.seen];
    expect(leaks('wrong password', texts, [wrongPassword, sourcePassword, targetPassword])).toEqual([]);
  });
});

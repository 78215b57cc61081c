/**
 * A local run and the process that runs it (issue 12, item 6 and D5): a closed terminal does
 * not end it, --detach runs it in the background, and a runner that is killed is reported by
 * `pgferry status`, refused by `pgferry cutover`, and leaves no task process behind.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startClusters, type LocalCluster } from '../../local/dev/cluster.js';
import { repositoryRoot } from '../../local/runner/index.js';
import { scratchDir } from '../support/clusters.js';
import { databaseHashes } from '../support/equality.js';
import { waitFor as waitUntil } from '../support/wait.js';

let source: LocalCluster;
let target: LocalCluster;
const scratch = scratchDir('cli-runner');
const pgferryScript = join(repositoryRoot, 'bin', 'pgferry.js');

beforeAll(async () => {
  [source, target] = await startClusters([{ major: 15, label: 'runner-source' }, { major: 15, label: 'runner-target' }]);
  await source.sql('CREATE DATABASE app');
  await source.sql('CREATE TABLE items (id int PRIMARY KEY, v text NOT NULL); INSERT INTO items SELECT g, $$value $$ || g FROM generate_series(1, 5000) g;', 'app');
});

afterAll(async () => {
  await Promise.all([source, target].map((c) => c?.stop()));
  scratch.remove();
});

const waitFor = <T>(what: string, probe: () => Promise<T | undefined | false | null> | T | undefined | false | null) => waitUntil(what, probe, 120_000, 250);

interface Finished {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/** `pgferry ARGS` as a shell job runs it: in a process group of its own. */
function startPgferry(...args: string[]): { child: ChildProcess; output: () => string; finished: Promise<Finished> } {
  const child = spawn(process.execPath, [pgferryScript, ...args], { cwd: scratch.dir, detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout!.on('data', (c) => (stdout += c));
  child.stderr!.on('data', (c) => (stderr += c));
  const finished = new Promise<Finished>((resolve) => child.on('close', (code, signal) => resolve({ code, signal, stdout, stderr })));
  return { child, output: () => stdout + stderr, finished };
}

const pgferry = (...args: string[]) => startPgferry(...args).finished;

const cdcSpec = (name: string, database: string) =>
  scratch.writeJson(`${name}.json`, {
    name,
    mode: 'full+cdc',
    source: { secret: scratch.secretFor(`${name}-source`, source), database: 'app' },
    target: { secret: scratch.secretFor(`${name}-target`, target), database },
  });

async function targetValue<T>(database: string, sql: string, params: unknown[]): Promise<T | undefined> {
  const client = await target.connect(database);
  try {
    return (await client.query(sql, params)).rows[0]?.value as T | undefined;
  } catch {
    return undefined;
  } finally {
    await client.end();
  }
}

/** Once the run streams changes, and its runner has beaten. */
const streamingWithRunner = (database: string, name: string) =>
  waitFor('the run to stream with its runner beating', () =>
    targetValue<boolean>(
      database,
      `SELECT s.streaming_since IS NOT NULL AND m.runner_heartbeat_at IS NOT NULL AS value
         FROM pgferry.replication_status s JOIN pgferry.migrations m ON m.name = s.migration WHERE m.name = $1`,
      [name],
    ),
  );

/** The processes whose parent is `pid` (Linux /proc). */
function childrenOf(pid: number): number[] {
  return readdirSync('/proc')
    .filter((entry) => /^\d+$/.test(entry))
    .filter((entry) => {
      try {
        const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
        return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]) === pid;
      } catch {
        return false;
      }
    })
    .map(Number);
}

/** Whether `pid` runs (a zombie no parent reaps does not). */
function running(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2)[0] !== 'Z';
  } catch {
    return false;
  }
}

describe('pgferry run and its runner', () => {
  it('goes on when its terminal closes (SIGHUP to its process group) and finishes with every change applied', async () => {
    await target.sql('CREATE DATABASE hangup');
    const spec = cdcSpec('runner-hangup', 'hangup');
    const run = startPgferry('run', spec);
    await streamingWithRunner('hangup', 'runner-hangup');
    // What a closed terminal (or SSH session) does to a job: SIGHUP to its whole process group.
    process.kill(-run.child.pid!, 'SIGHUP');
    await source.sql("INSERT INTO items VALUES (900001, 'after the hangup')", 'app');
    await waitFor('the change made after the hangup to be applied', () => targetValue('hangup', 'SELECT v AS value FROM items WHERE id = $1', [900001]));
    expect((await pgferry('cutover', spec)).code).toBe(0);
    const result = await run.finished;
    expect(result.stderr).toContain('The terminal closed: the run goes on (process');
    expect(result.stdout).toContain('Migration succeeded.');
    // What the replicate task logs that matters reaches the user (issue 12, D8).
    expect(result.stderr).toContain('[Replicate] streaming from slot pgferry_runner_hangup');
    expect(result.code).toBe(0);
  });

  it('stops on Ctrl-C (SIGINT to its process group), which reaches the runner in its own session: exit 130, the run paused with its slot kept', async () => {
    await target.sql('CREATE DATABASE interrupted');
    const spec = cdcSpec('runner-interrupted', 'interrupted');
    const run = startPgferry('run', spec);
    await streamingWithRunner('interrupted', 'runner-interrupted');
    process.kill(-run.child.pid!, 'SIGINT');
    const result = await run.finished;
    expect(result.stderr).toContain('Migration stopped.');
    expect(result.code).toBe(130);
    const slotRows = async () => (await source.sql("SELECT 1 AS kept FROM pg_replication_slots WHERE slot_name = 'pgferry_runner_interrupted'", 'app'))[0]!.rows;
    expect(await slotRows()).toEqual([{ kept: 1 }]);
    expect(await targetValue<string>('interrupted', 'SELECT phase AS value FROM pgferry.migrations WHERE name = $1', ['runner-interrupted'])).toBe('paused');
    const abandoned = await pgferry('stop', spec, '--drop');
    expect(abandoned.code).toBe(0);
    expect(await slotRows()).toEqual([]);
  });

  it('runs in the background with --detach, its output in the log file, and says how to follow it', async () => {
    await target.sql('CREATE DATABASE detached');
    const spec = scratch.writeJson('runner-detached.json', {
      name: 'runner-detached',
      source: { secret: scratch.secretFor('runner-detached-source', source), database: 'app' },
      target: { secret: scratch.secretFor('runner-detached-target', target), database: 'detached' },
    });
    const result = await pgferry('run', spec, '--detach');
    expect(result.code).toBe(0);
    const log = join(scratch.dir, 'pgferry-runner-detached.log');
    expect(result.stdout).toMatch(/runs in the background as process \d+/);
    expect(result.stdout).toContain(log);
    expect(result.stdout).toContain(`pgferry status ${spec}`);
    await waitFor('the detached run to finish', () => existsSync(log) && /Migration (succeeded|failed)/.test(readFileSync(log, 'utf8')));
    expect(readFileSync(log, 'utf8')).toContain('Migration succeeded.');
    const status = await pgferry('status', spec);
    expect(status.stdout).toContain('Migration runner-detached: done');
    expect(status.code).toBe(0);
  });

  it('reports a killed runner in status, refuses cutover, its orphaned tasks stop and release the slot, and resume goes on to an identical target', async () => {
    await target.sql('CREATE DATABASE killed');
    const name = 'runner-killed';
    const spec = cdcSpec(name, 'killed');
    const run = startPgferry('run', spec);
    await streamingWithRunner('killed', 'runner-killed');
    // The runner runs in a session of its own, started by `pgferry run`; it records its process id.
    const runner = (await targetValue<number>('killed', 'SELECT runner_pid AS value FROM pgferry.migrations WHERE name = $1', [name]))!;
    expect(childrenOf(run.child.pid!)).toContain(runner);
    const tasks = childrenOf(runner);
    expect(tasks.length).toBeGreaterThan(0);
    process.kill(runner, 'SIGKILL');
    const front = await run.finished;
    expect(front.code).not.toBe(0);

    const status = await waitFor('status to report the runner gone', async () => {
      const answer = await pgferry('status', spec);
      return answer.code !== 0 && answer;
    });
    expect(status.stdout).toContain('Migration runner-killed: replicate');
    expect(status.stderr).toMatch(/the runner of this run \(process \d+ on .+\) is gone since /);
    expect(status.stderr).toContain('continue with pgferry resume SPEC, or abandon with pgferry stop SPEC --drop');
    expect(status.code).toBe(1);

    const cutover = await pgferry('cutover', spec);
    expect(cutover.stdout).not.toContain('Cutover requested');
    expect(cutover.stderr).toContain('the runner of this run');
    expect(cutover.code).toBe(1);

    // The orphans notice their runner is gone: no task process is left, and the slot has no walsender.
    await waitFor('the orphaned task processes to exit', () => tasks.every((pid) => !running(pid)));
    const [slot] = await source.sql("SELECT active FROM pg_replication_slots WHERE slot_name = 'pgferry_runner_killed'", 'app');
    expect(slot!.rows).toEqual([{ active: false }]);

    await source.sql("INSERT INTO items SELECT g, 'while the runner was gone ' || g FROM generate_series(100001, 100500) g", 'app');
    const resumed = startPgferry('resume', spec);
    await waitFor('the resumed run to stream', async () =>
      (await targetValue<boolean>('killed', "SELECT phase = 'replicate' AS value FROM pgferry.migrations WHERE name = $1", [name])) &&
      (await pgferry('status', spec)).code === 0,
    );
    await source.sql("UPDATE items SET v = v || ' resumed' WHERE id % 7 = 0", 'app');
    await waitFor('cutover to be requested', async () => (await pgferry('cutover', spec)).code === 0);
    const result = await resumed.finished;
    expect(result.stdout).toContain('the run is paused first, then resumed here');
    expect(result.code, result.stderr).toBe(0);
    expect(await databaseHashes(target, 'killed')).toEqual(await databaseHashes(source, 'app'));
    const [left] = await source.sql("SELECT 1 FROM pg_replication_slots WHERE slot_name = 'pgferry_runner_killed'", 'app');
    expect(left!.rows).toEqual([]);
  });
});

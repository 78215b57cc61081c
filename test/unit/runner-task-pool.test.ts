import type { ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { keepsSpare, sparesToStart, startTaskProcess, TaskProcesses, taskProcessTitle, tasksStartedAtOnce, warmLoader } from '../../local/runner/task-pool.js';
import { waitFor } from '../support/wait.js';

describe('how many task processes the pool keeps warm', () => {
  it('warms the copy workers of a full load beside the snapshot holder, no more workers than cores', () => {
    expect(tasksStartedAtOnce({ mode: 'full', fullLoad: { parallelism: 4 } }, 8)).toBe(5);
    expect(tasksStartedAtOnce({ mode: 'full+cdc', fullLoad: { parallelism: 8 } }, 2)).toBe(3);
  });

  it('warms one for a CDC-only run or a spec without a full-load parallelism', () => {
    expect(tasksStartedAtOnce({ mode: 'cdc', fullLoad: { parallelism: 4 } }, 8)).toBe(1);
    expect(tasksStartedAtOnce({ mode: 'full' }, 8)).toBe(1);
    expect(tasksStartedAtOnce(undefined, 8)).toBe(1);
  });

  it('starts only the spares missing from those ready or warming', () => {
    expect(sparesToStart(3, 0, 0)).toBe(3);
    expect(sparesToStart(3, 1, 1)).toBe(1);
    expect(sparesToStart(1, 1, 1)).toBe(0);
  });

  it('keeps a spare only while fewer tasks run than there are cores', () => {
    expect(keepsSpare(1, 2)).toBe(true);
    expect(keepsSpare(2, 2)).toBe(false);
  });
});

describe('task processes', () => {
  let dir: string;
  let processes: TaskProcesses;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'pgferry-pool-test-'));
  });
  afterEach(() => {
    processes?.killAll();
    rmSync(dir, { recursive: true, force: true });
  });

  /** A task that says it started, then waits to be killed. */
  const taskScript = () => {
    const script = join(dir, 'task.mjs');
    writeFileSync(script, "process.send('started'); setInterval(() => undefined, 1000);\n");
    return script;
  };
  const started = (child: ChildProcess) => new Promise<void>((resolve) => child.on('message', (message) => message === 'started' && resolve()));
  const commandLine = (pid: number) => readFileSync(`/proc/${pid}/cmdline`, 'utf8').replace(/\0+/g, ' ').trim();
  const ended = (child: ChildProcess) => new Promise<void>((resolve) => (child.exitCode !== null || child.signalCode !== null ? resolve() : child.once('exit', () => resolve())));

  it('starts a task cold when no spare is ready, and kills it with the run', async () => {
    const script = taskScript();
    processes = new TaskProcesses(process.env);
    const { child } = startTaskProcess(processes, { state: 'CopyUnit', task: 'Copy', script, env: {} }, {});
    await started(child);
    expect(commandLine(child.pid!)).toContain(script);
    processes.killAll();
    await ended(child);
  });

  it.runIf(process.platform === 'linux')("hands the task to a warm spare, which takes the task's title", async () => {
    const script = taskScript();
    processes = new TaskProcesses(process.env);
    processes.keepSpare(await warmLoader([Promise.resolve({ script, packages: [] })]));
    await waitFor('a spare to be ready', () => processes.readySpares > 0, 60_000, 20);
    const run = startTaskProcess(processes, { state: 'CopyUnit', task: 'Copy', script, env: { UNIT: '1' } }, {});
    await started(run.child);
    expect(commandLine(run.child.pid!)).toBe(taskProcessTitle('CopyUnit', 'Copy'));
    expect(taskProcessTitle('CopyUnit', 'Copy')).toBe('pgferry task Copy (state CopyUnit)');
    processes.killAll();
    await ended(run.child);
  });
});

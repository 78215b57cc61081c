/**
 * A task process ends once its work is done or abandoned, whatever it still holds open: a
 * replicate task that outlived its run kept a source transaction (xmin) and a walsender.
 */
import { fork, spawn } from 'node:child_process';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { repositoryRoot } from '../../local/runner/index.js';

const fixture = join(repositoryRoot, 'test/fixtures/tasks/leaves-open.ts');

function runFixture(mode: string): Promise<{ code: number | null; stderr: string }> {
  const child = spawn(process.execPath, ['--import', 'tsx', fixture], { cwd: repositoryRoot, env: { ...process.env, FIXTURE_MODE: mode } });
  let stderr = '';
  child.stderr.on('data', (chunk) => (stderr += chunk));
  const killer = setTimeout(() => child.kill('SIGKILL'), 60_000);
  return new Promise((resolve) => child.once('exit', (code) => (clearTimeout(killer), resolve({ code, stderr }))));
}

describe('a task process', () => {
  it('exits non-zero after a failure, although its body left a handle open', async () => {
    const { code, stderr } = await runFixture('fail');
    expect(code).toBe(1);
    expect(stderr).toContain('leaves-open failed: the slot could not be created');
  });

  it('exits zero after its work, although its body left a handle open', async () => {
    expect((await runFixture('succeed')).code).toBe(0);
  });
});

describe('a task process the local runner started', () => {
  it('stops as on SIGTERM once the runner is gone (its IPC channel closed), instead of living on as an orphan', async () => {
    const child = fork(join(repositoryRoot, 'test/fixtures/tasks/until-stopped.ts'), [], {
      cwd: repositoryRoot,
      execArgv: ['--import', 'tsx'],
      env: { ...process.env, PGFERRY_LOCAL_CALLBACK: '1' },
      stdio: ['ignore', 'pipe', 'pipe', 'ipc'],
    });
    let stderr = '';
    child.stderr!.on('data', (chunk) => (stderr += chunk));
    const killer = setTimeout(() => child.kill('SIGKILL'), 60_000);
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
    await new Promise<void>((resolve) => child.once('message', () => resolve()));
    // What a killed runner leaves: the channel closes.
    child.disconnect();
    const code = await exited;
    clearTimeout(killer);
    expect(stderr).toContain('the pgferry runner that started this task is gone');
    expect(stderr).toContain('until-stopped: stopped on SIGTERM');
    expect(code).toBe(0);
  });
});

/**
 * A local run's runner in a session of its own (issue 12, item 6). A closed terminal sends
 * SIGHUP to every process of its session's jobs: to the runner, and to the helpers it started
 * (the TypeScript loader's esbuild service, without which no module loads any more). The
 * runner therefore never runs in the terminal's session: `pgferry run` starts it in a new one
 * writing to the same terminal, and follows it (Ctrl-C and SIGTERM are passed on; its exit code
 * is the run's). `--detach` starts it the same way with a log file instead, and returns.
 */
import { spawn, type ChildProcess, type StdioOptions } from 'node:child_process';
import { join } from 'node:path';
import { repositoryRoot } from '../../local/runner/index.js';
import { EXIT_FAILED, EXIT_INTERRUPTED } from '../exit-codes.js';
import type { Out } from '../format.js';

/** Set for the runner: this process runs the workflow itself. */
export const RUNNER_ENV = 'PGFERRY_RUNNER';

export const isRunner = () => process.env[RUNNER_ENV] === '1';

/** The commands a runner runs: a new run, or the resume of a paused one. */
export type RunnerCommand = 'run' | 'resume';

/** Starts `pgferry run|resume SPEC` as a runner in a new session; resolves once it runs, or with why it could not start. */
export async function startRunner(
  command: RunnerCommand,
  path: string,
  { reportFile, force = false }: { reportFile?: string; force?: boolean },
  stdio: StdioOptions,
): Promise<ChildProcess | Error> {
  const args = [join(repositoryRoot, 'bin', 'pgferry.js'), command, path, ...(reportFile ? ['--report', reportFile] : []), ...(force ? ['--force'] : [])];
  const runner = spawn(process.execPath, args, { cwd: process.cwd(), env: { ...process.env, [RUNNER_ENV]: '1' }, detached: true, stdio });
  const failed = await new Promise<Error | undefined>((resolve) => {
    runner.once('spawn', () => resolve(undefined));
    runner.once('error', resolve);
  });
  return failed ?? runner;
}

/** `pgferry run|resume SPEC` in a terminal: the runner in its own session, followed until it ends. */
export async function followRunner(command: RunnerCommand, path: string, options: { reportFile?: string; force?: boolean }, err: Out): Promise<number> {
  const runner = await startRunner(command, path, options, ['ignore', 'inherit', 'inherit']);
  if (runner instanceof Error) {
    err.write(`Cannot start the run: ${runner.message}\n`);
    return EXIT_FAILED;
  }
  const ended = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => runner.once('exit', (code, signal) => resolve({ code, signal })));
  const passOn = (signal: NodeJS.Signals) => () => void runner.kill(signal);
  const onInterrupt = passOn('SIGINT');
  const onTerminate = passOn('SIGTERM');
  const onHangup = () => {
    err.write(`The terminal closed: the run goes on (process ${runner.pid}). Follow it with: pgferry status ${path}\n`);
  };
  // Writing to a closed terminal or pipe fails (EIO, EPIPE): the run goes on without its follower's words.
  const ignoreOutputError = () => undefined;
  process.on('SIGINT', onInterrupt);
  process.on('SIGTERM', onTerminate);
  process.on('SIGHUP', onHangup);
  for (const stream of [process.stdout, process.stderr]) stream.on('error', ignoreOutputError);
  try {
    const { code, signal } = await ended;
    return code ?? (signal === 'SIGINT' || signal === 'SIGTERM' ? EXIT_INTERRUPTED : EXIT_FAILED);
  } finally {
    process.off('SIGINT', onInterrupt);
    process.off('SIGTERM', onTerminate);
    process.off('SIGHUP', onHangup);
    for (const stream of [process.stdout, process.stderr]) stream.off('error', ignoreOutputError);
  }
}

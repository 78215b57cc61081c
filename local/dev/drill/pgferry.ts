/**
 * The pgferry command line as the drill's user runs it: `node bin/pgferry.js …` as child
 * processes, each writing to a log file of its own. `run` and `resume` follow their runner
 * (which runs in a session of its own) until the run ends; short commands are awaited.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, openSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { repositoryRoot } from '../../runner/index.js';
import { sleep } from '../../../engine/sql.js';
import { DRILL_ID_ENV } from './processes.js';

/** A `pgferry run|resume` the drill started, and how it ended. */
export interface FollowedRun {
  readonly command: string;
  readonly child: ChildProcess;
  readonly logFile: string;
  /** Its exit code (null: ended by a signal). */
  readonly exited: Promise<number | null>;
}

export class PgferryCli {
  readonly #children = new Set<ChildProcess>();
  #count = 0;

  constructor(
    private readonly specFile: string,
    private readonly logDir: string,
    private readonly drillId: string,
  ) {}

  #spawn(args: string[]): { child: ChildProcess; logFile: string; exited: Promise<number | null> } {
    const logFile = join(this.logDir, `${String(++this.#count).padStart(2, '0')}-${args[0]}.log`);
    const log = openSync(logFile, 'a');
    const child = spawn(process.execPath, [join(repositoryRoot, 'bin', 'pgferry.js'), ...args], {
      cwd: repositoryRoot,
      env: { ...process.env, [DRILL_ID_ENV]: this.drillId },
      stdio: ['ignore', log, log],
    });
    closeSync(log);
    this.#children.add(child);
    const exited = new Promise<number | null>((resolve) => {
      child.once('exit', (code) => resolve(code));
      child.once('error', () => resolve(null));
    }).finally(() => this.#children.delete(child));
    return { child, logFile, exited };
  }

  /** `pgferry run SPEC` or `pgferry resume SPEC`, running until its run ends. */
  follow(command: 'run' | 'resume'): FollowedRun {
    return { command, ...this.#spawn([command, this.specFile]) };
  }

  /** A short command (`status`, `cutover`, `stop`) with SPEC, run to its end: its exit code and output. */
  async command(command: string, ...options: string[]): Promise<{ code: number | null; output: string }> {
    const { logFile, exited } = this.#spawn([command, this.specFile, ...options]);
    const code = await exited;
    return { code, output: readFileSync(logFile, 'utf8').trim() };
  }

  /** Ends every command still running: SIGTERM (a follower passes it on to its runner), SIGKILL after `graceMs`. */
  async stopAll(graceMs = 15_000): Promise<void> {
    const children = [...this.#children];
    for (const child of children) child.kill('SIGTERM');
    const deadline = Date.now() + graceMs;
    while (this.#children.size > 0 && Date.now() < deadline) await sleep(200);
    for (const child of this.#children) child.kill('SIGKILL');
  }
}

/** The last lines of a log file, for a note. */
export function logTail(logFile: string, lines = 3): string {
  try {
    return readFileSync(logFile, 'utf8').trim().split('\n').slice(-lines).join(' / ');
  } catch {
    return '';
  }
}

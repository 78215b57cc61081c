/**
 * The task processes of a run: each task runs as a child process of its bundle, started cold or
 * handed to a warm spare, and every one of them is killed with the run (on abort, at its
 * state's time limit, when the run ends or this process exits).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import { bundleDir, digest, writeOnce, type TaskBundle } from './task-bundles.js';

export interface TaskOutputLine {
  state: string;
  task: string;
  stream: 'stdout' | 'stderr';
  line: string;
}

/** Who hears of a run's task processes, and the signal that stops them from starting. */
export interface TaskWatchers {
  signal?: AbortSignal;
  onTaskOutput?: (line: TaskOutputLine) => void;
  /** Called with each task's child process as it starts (tests use it to kill workers). */
  onTaskStarted?: (task: { state: string; task: string; pid: number }) => void;
}

/** A started task process. */
export interface TaskProcess {
  child: ChildProcess;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** The last few thousand characters the process wrote. */
  tail: () => string;
}

/** A warm task process says so once it listens for its task. */
const WARM_READY = 'pgferry-warm-ready';

/** What a spare is sent when it is given a task. */
interface WarmTask {
  script: string;
  env: Record<string, string>;
  /** Its title from then on, so `ps` names the task instead of the warm loader. */
  title: string;
}

/** The title a spare takes when given `task` for `state`. */
export const taskProcessTitle = (state: string, task: string) => `pgferry task ${task} (state ${state})`;

/** How many spares to start so that `wanted` tasks can start warm at once. */
export const sparesToStart = (wanted: number, ready: number, warming: number) => Math.max(0, wanted - ready - warming);

/** A spare is warmed only while fewer tasks run than the machine has cores (it would take a core from them). */
export const keepsSpare = (running: number, cores: number) => running < cores;

/**
 * How many task processes to have warm when the run's load starts: its copy workers beside the
 * task that holds the snapshot (ExportSnapshot, or StartReplication, which runs on after it).
 * No more workers than cores: the ones beyond would wait for a core anyway, and warming them
 * would take it from the states before the load.
 */
export function tasksStartedAtOnce(spec: unknown, cores = availableParallelism()): number {
  const { mode, fullLoad } = (spec ?? {}) as { mode?: string; fullLoad?: { parallelism?: number } };
  if (mode === 'cdc' || typeof fullLoad?.parallelism !== 'number') return 1;
  return Math.min(fullLoad.parallelism, cores) + 1;
}

/**
 * The task processes of a run. Besides the running ones it keeps a spare started ahead with the
 * packages the tasks import already loaded, so a task starts without paying Node's start and
 * those imports (about 0.15 s of CPU) on its state's clock; the spare is given its task over
 * IPC and then runs exactly as a process started for it would.
 *
 * Before a full load it warms as many as the load starts at once (`prepareFor`): otherwise all
 * copy workers but one would start cold, late, and on the CPU the first one copies with.
 */
export class TaskProcesses {
  readonly #running = new Set<ChildProcess>();
  readonly #ready: ChildProcess[] = [];
  readonly #warming = new Set<ChildProcess>();
  #warmLoader?: string;
  /** How many spares to have once the loader is known (prepareFor may come first). */
  #wanted = 1;
  #closed = false;

  constructor(private readonly environment: NodeJS.ProcessEnv) {}

  /** Spares ready to be given a task. */
  get readySpares(): number {
    return this.#ready.length;
  }

  /** Keeps a spare from now on, started with `loader` (see warmLoader). */
  keepSpare(loader: string): void {
    this.#warmLoader = loader;
    this.#replenish(this.#wanted);
  }

  /** Warms spares (once) until `count` tasks can start warm at the same time. */
  prepareFor(count: number): void {
    this.#wanted = count;
    this.#replenish(count);
  }

  /**
   * A process running `script` with `env` on top of the run's environment: a ready spare given
   * the task and `title` (none once the run is over), else one started for it. Tracked until it exits.
   */
  start(script: string, env: Record<string, string>, title: string): ChildProcess {
    const spare = this.#closed ? undefined : this.#ready.shift();
    const child = spare ?? this.#spawn(script, { ...this.environment, ...env });
    spare?.send({ script, env, title } satisfies WarmTask);
    this.#track(child);
    return child;
  }

  /** Ends every process of the run; resolves once all have exited (a run never leaves one behind). */
  async killAll(): Promise<void> {
    this.#closed = true;
    await Promise.all([...this.#running, ...this.#ready, ...this.#warming].map(kill));
  }

  /** Tracks a task process until it exits; it is killed with the run (at once, if the run is over). */
  #track(child: ChildProcess): void {
    if (this.#closed) {
      void kill(child);
      return;
    }
    this.#running.add(child);
    this.#keepOne();
    const ended = () => {
      this.#running.delete(child);
      this.#keepOne();
    };
    child.once('exit', ended);
    child.once('error', ended);
  }

  #keepOne(): void {
    if (keepsSpare(this.#running.size, availableParallelism())) this.#replenish(1);
  }

  #replenish(count: number): void {
    if (this.#closed || !this.#warmLoader) return;
    for (let n = sparesToStart(count, this.#ready.length, this.#warming.size); n > 0; n--) this.#startSpare(this.#warmLoader);
  }

  /** A task outlives a killed runner only until it sees the IPC channel close (tasks/task.ts, stopWhenRunnerGone). */
  #spawn(script: string, env: NodeJS.ProcessEnv): ChildProcess {
    // PGFERRY_TASK_CPU_PROF=DIR: each task process writes a V8 CPU profile there when it exits (benchmarks' profiling; NODE_OPTIONS refuses --cpu-prof).
    const profile = process.env.PGFERRY_TASK_CPU_PROF ? ['--cpu-prof', `--cpu-prof-dir=${process.env.PGFERRY_TASK_CPU_PROF}`] : [];
    return spawn(process.execPath, ['--enable-source-maps', ...profile, script], { cwd: process.cwd(), env, stdio: ['ignore', 'pipe', 'pipe', 'ipc'] });
  }

  #startSpare(loader: string): void {
    const child = this.#spawn(loader, this.environment);
    this.#warming.add(child);
    const forget = () => {
      this.#warming.delete(child);
      const index = this.#ready.indexOf(child);
      if (index >= 0) this.#ready.splice(index, 1);
    };
    child.once('message', (message) => {
      this.#warming.delete(child);
      if (message === WARM_READY && !this.#closed) this.#ready.push(child);
      else void kill(child);
    });
    child.once('exit', forget);
    child.once('error', forget);
  }
}

const hasExited = (child: ChildProcess) => child.exitCode !== null || child.signalCode !== null;

/** SIGTERM, then SIGKILL if the process is still there 5 s later; resolves once it has exited. */
export function kill(child: ChildProcess): Promise<void> {
  if (hasExited(child)) return Promise.resolve();
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  child.kill('SIGTERM');
  const forced = setTimeout(() => hasExited(child) || child.kill('SIGKILL'), 5_000);
  return exited.finally(() => clearTimeout(forced));
}

/** Kills the process when `seconds` pass (the interpreter does not stop handlers); returns what cancels that. */
export function killAfter(child: ChildProcess, seconds: number): () => void {
  const timer = setTimeout(() => void kill(child), seconds * 1000);
  return () => clearTimeout(timer);
}

/**
 * The script of a warm task process: it listens for its task, says it is ready, loads the
 * packages the tasks import, then — given a task — takes the task's title and environment and
 * imports its bundle, which runs the task as in a process started for it. A spare whose runner
 * is gone before it is given a task exits.
 */
export async function warmLoader(bundles: Promise<TaskBundle>[]): Promise<string> {
  const packages = [...new Set((await Promise.all(bundles)).flatMap((bundle) => bundle.packages))].sort();
  const code = `const loaded = Promise.all(${JSON.stringify(packages)}.map((name) => import(name).catch(() => undefined)));
const runnerGone = () => process.exit();
process.once('disconnect', runnerGone);
process.once('message', async (message) => {
  process.off('disconnect', runnerGone);
  process.title = message.title;
  await loaded;
  Object.assign(process.env, message.env);
  await import(message.script);
});
process.send(${JSON.stringify(WARM_READY)});
`;
  const path = join(bundleDir, `warm-${digest(code)}.mjs`);
  writeOnce(path, code);
  return path;
}

/** Starts `script` for `task` of `state` and follows its output line by line. */
export function startTaskProcess(
  processes: TaskProcesses,
  { state, task, script, env }: { state: string; task: string; script: string; env: Record<string, string> },
  watchers: TaskWatchers,
): TaskProcess {
  const child = processes.start(script, env, taskProcessTitle(state, task));
  if (child.pid !== undefined) watchers.onTaskStarted?.({ state, task, pid: child.pid });
  let tail = '';
  for (const stream of ['stdout', 'stderr'] as const) {
    let pending = '';
    child[stream]!.setEncoding('utf8').on('data', (chunk: string) => {
      tail = (tail + chunk).slice(-4000);
      const lines = (pending + chunk).split('\n');
      pending = lines.pop()!;
      for (const line of lines) watchers.onTaskOutput?.({ state, task, stream, line });
    });
  }
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    child.once('exit', (code, signal) => resolve({ code, signal }));
    child.once('error', () => resolve({ code: null, signal: null }));
  });
  return { child, exited, tail: () => tail };
}

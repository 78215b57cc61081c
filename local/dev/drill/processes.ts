/**
 * The processes of the drill's migration, found through /proc: every pgferry process the drill
 * starts (the commands, their runners, the runners' task processes and warm spares) inherits
 * DRILL_ID_ENV, so the drill finds, kills and counts only its own.
 */
import { readdirSync, readFileSync } from 'node:fs';

/** Set in the environment of every pgferry command the drill starts, and so of every process they start. */
export const DRILL_ID_ENV = 'PGFERRY_DRILL_ID';

export interface ProcessInfo {
  pid: number;
  /** Its command line, or its title once it set one (a task process: `pgferry task Replicate (state …)`). */
  cmdline: string;
}

const readOr = (path: string): string | undefined => {
  try {
    return readFileSync(path, 'latin1');
  } catch {
    return undefined;
  }
};

/** Processes (other than this one) whose environment carries the drill's id. */
export function drillProcesses(drillId: string): ProcessInfo[] {
  const marker = `${DRILL_ID_ENV}=${drillId}`;
  const found: ProcessInfo[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry) || Number(entry) === process.pid) continue;
    const environ = readOr(`/proc/${entry}/environ`);
    if (!environ?.split('\0').includes(marker)) continue;
    const cmdline = (readOr(`/proc/${entry}/cmdline`) ?? '').split('\0').join(' ').trim();
    // A zombie has no command line: it is gone, only not yet reaped.
    if (cmdline) found.push({ pid: Number(entry), cmdline });
  }
  return found;
}

/** The replicate task processes of the drill's run: by their title (tasks/task.ts), or the bundle a cold task runs. */
export function replicateTasks(drillId: string): ProcessInfo[] {
  return drillProcesses(drillId).filter(({ cmdline }) => /pgferry task Replicate\b|\/Replicate-[0-9a-f]+\.mjs/.test(cmdline));
}

export function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Sends `signal` to each process by its id; one already gone is skipped. */
export function signalProcesses(pids: number[], signal: NodeJS.Signals): void {
  for (const pid of pids) {
    try {
      process.kill(pid, signal);
    } catch {
      // Gone meanwhile.
    }
  }
}

/**
 * A local run whose runner is gone (killed, its machine lost): its phase says it runs, but
 * nothing drives its workflow any more, and its task processes may still hold the slot.
 * `pgferry status` reports it and `pgferry cutover` refuses with the same words.
 */
import { hostname } from 'node:os';
import type pg from 'pg';
import { readRunnerBeat, RUNNER_GONE_AFTER_SECONDS, RUNNER_HEARTBEAT_MS, type RunnerBeat } from './control/index.js';

/** Phases in which no runner is meant to run. */
const NOT_RUNNING = new Set(['done', 'failed', 'paused']);

/** Whether process `pid` exists on this machine. */
export function localProcessAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * Whether the run's runner is gone: silent for RUNNER_GONE_AFTER_SECONDS, or sooner when it ran
 * on this machine and its process no longer exists (after two missed beats: a live runner of
 * another machine with the same name keeps beating).
 */
export function runnerGone(beat: RunnerBeat, thisHost: string, processAlive: (pid: number) => boolean): boolean {
  if (!beat.execution?.startsWith('local:') || NOT_RUNNING.has(beat.phase) || beat.ageSeconds === null) return false;
  if (beat.ageSeconds > RUNNER_GONE_AFTER_SECONDS) return true;
  const missedTwo = beat.ageSeconds > (2 * RUNNER_HEARTBEAT_MS) / 1000;
  return missedTwo && beat.host === thisHost && beat.pid !== null && !processAlive(beat.pid);
}

/** What a person reads about a run whose runner is gone. */
export function lostRunnerMessage(name: string, beat: RunnerBeat): string {
  const where = beat.pid !== null ? ` (process ${beat.pid}${beat.host ? ` on ${beat.host}` : ''})` : '';
  const since = beat.heartbeatAt ? ` since ${beat.heartbeatAt.toISOString()}` : '';
  return (
    `Migration ${name}: the runner of this run${where} is gone${since}, ${Math.round(beat.ageSeconds ?? 0)} s without a heartbeat: ` +
    `its task processes may still hold the slot; continue with pgferry resume SPEC, or abandon with pgferry stop SPEC --drop.`
  );
}

/** The message about the migration's runner if it is gone; undefined otherwise (running, ended, on AWS, or never beat). */
export async function lostRunner(target: pg.Client, name: string, processAlive = localProcessAlive): Promise<string | undefined> {
  const beat = await readRunnerBeat(target, name);
  return beat && runnerGone(beat, hostname(), processAlive) ? lostRunnerMessage(name, beat) : undefined;
}

/**
 * What the drill sees of its run, read from the target's control schema as `pgferry status`
 * reads it, and the wait for a fault's recovery: a marker row written on the source after the
 * fault is applied on the target, the streamer streams, and the lag is under the bound.
 */
import { migrationState, readReplicationStatus, readRunnerBeat } from '../../../engine/control/index.js';
import { messageOf, pollUntil, sleep } from '../../../engine/sql.js';
import type { DrillContext } from './context.js';
import { DRILL_DATABASE } from './setup.js';

export interface RunView {
  phase: string;
  error: string | null;
  /** The run that holds the migration (a resume takes it over with a new one). */
  execution: string | null;
  streaming: boolean;
  lagSeconds: number | null;
  runnerPid: number | null;
}

/** The run as the target records it; undefined while the target cannot be read (down) or the run is not registered. */
export async function readRun(context: DrillContext): Promise<RunView | undefined> {
  const client = await context.target.connect(DRILL_DATABASE).catch(() => undefined);
  if (!client) return undefined;
  try {
    const state = await migrationState(client, context.name);
    if (!state) return undefined;
    const status = await readReplicationStatus(client, context.name);
    const beat = await readRunnerBeat(client, context.name);
    return {
      phase: state.phase,
      error: state.error,
      execution: state.execution,
      streaming: Boolean(status?.streamingSince) && (status?.heartbeatAgeSeconds ?? Infinity) < 30,
      lagSeconds: status?.lagSeconds ?? null,
      runnerPid: beat?.pid ?? null,
    };
  } catch {
    return undefined;
  } finally {
    await client.end().catch(() => undefined);
  }
}

/** Waits until `probe` gives a value, for at most `timeoutSeconds` (or until the drill is stopped). */
export function waitFor<T>(context: DrillContext, timeoutSeconds: number, probe: () => Promise<T | undefined>): Promise<T | undefined> {
  return pollUntil(() => probe().catch(() => undefined), { intervalMs: 1_000, timeoutMs: timeoutSeconds * 1000, signal: context.signal });
}

export const waitForPhase = (context: DrillContext, phases: string[], timeoutSeconds: number) =>
  waitFor(context, timeoutSeconds, async () => {
    const run = await readRun(context);
    return run && phases.includes(run.phase) ? run : undefined;
  });

let markers = 0;

/** Writes a marker row on the source (retrying while the source is down); its id. */
async function writeMarker(context: DrillContext, fault: string, deadline: number): Promise<number> {
  const id = ++markers;
  for (;;) {
    try {
      await context.source.sql(`INSERT INTO public.drill_marks (id, fault) VALUES (${id}, '${fault.replace(/'/g, "''")}')`, DRILL_DATABASE);
      return id;
    } catch (error) {
      if (Date.now() > deadline || context.signal.aborted) throw new Error(`the source took no marker row: ${messageOf(error)}`);
      await sleep(1_000, context.signal);
    }
  }
}

async function markerApplied(context: DrillContext, id: number): Promise<boolean> {
  const [result] = await context.target.sql(`SELECT 1 FROM public.drill_marks WHERE id = ${id}`, DRILL_DATABASE);
  return (result?.rowCount ?? 0) > 0;
}

export type Recovery = { recovered: true; seconds: number } | { recovered: false; seconds: number; why: string; paused: boolean };

/**
 * Waits until the run has recovered from `fault` (the injection ended just now): streaming,
 * the lag under the bound, and a marker written on the source after the fault applied. A run
 * that pauses or fails meanwhile has not recovered (it waits for a person).
 */
export async function waitForRecovery(context: DrillContext, fault: string): Promise<Recovery> {
  const started = Date.now();
  const seconds = () => Math.round((Date.now() - started) / 100) / 10;
  const deadline = started + context.options.recoveryTimeoutSeconds * 1000;
  let marker: number;
  try {
    marker = await writeMarker(context, fault, deadline);
  } catch (error) {
    return { recovered: false, seconds: seconds(), why: messageOf(error), paused: false };
  }
  let last: RunView | undefined;
  const outcome = await waitFor(context, (deadline - Date.now()) / 1000, async () => {
    last = await readRun(context);
    if (last?.phase === 'paused' || last?.phase === 'failed') return last.phase;
    const live = last?.phase === 'replicate' && last.streaming && (last.lagSeconds ?? Infinity) <= context.options.lagBoundSeconds;
    return live && (await markerApplied(context, marker)) ? 'recovered' : undefined;
  });
  if (outcome === 'recovered') return { recovered: true, seconds: seconds() };
  const why = outcome
    ? `the run is ${outcome}: ${last?.error ?? 'no error recorded'}`
    : `not streaming with lag ≤ ${context.options.lagBoundSeconds} s after ${context.options.recoveryTimeoutSeconds} s (phase ${last?.phase ?? 'unknown'}, lag ${last?.lagSeconds ?? '?'} s)`;
  return { recovered: false, seconds: seconds(), why, paused: outcome === 'paused' };
}

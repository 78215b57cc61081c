/**
 * The end of each fault: wait for the run to recover by itself. A run that paused instead has
 * not recovered; the drill then resumes it, as its user would, so that the faults after it
 * still run, and says so in the fault's notes.
 */
import type { DrillContext, FaultResult } from './context.js';
import { waitForRecovery } from './observe.js';
import type { FollowedRun } from './pgferry.js';

/** A fault's result, and whether the drill can go on with the next one. */
export interface Settled {
  result: FaultResult;
  goOn: boolean;
}

/** Starts `pgferry resume SPEC` as a user does (a new child process), following it like the first run. */
export function resume(context: DrillContext): FollowedRun {
  context.say('pgferry resume SPEC');
  const run = context.cli.follow('resume');
  context.runs.push(run);
  return run;
}

/** Waits for the run to recover from `fault`, with the notes of its injection; resumes a run that paused meanwhile. */
export async function settle(context: DrillContext, fault: string, notes: string[]): Promise<Settled> {
  context.say(`${fault}: waiting for the run to stream again with lag ≤ ${context.options.lagBoundSeconds} s…`);
  const recovery = await waitForRecovery(context, fault);
  if (recovery.recovered) {
    context.say(`${fault}: recovered after ${recovery.seconds} s`);
    return { result: { fault, recovered: true, seconds: recovery.seconds, notes }, goOn: true };
  }
  context.say(`${fault}: NOT recovered: ${recovery.why}`);
  notes.push(recovery.why);
  if (!recovery.paused) return { result: { fault, recovered: false, notes }, goOn: false };
  resume(context);
  const again = await waitForRecovery(context, `${fault} (resumed by the drill)`);
  notes.push(again.recovered ? `the drill resumed it: streaming again ${again.seconds} s later` : `the drill's resume did not recover it: ${again.why}`);
  return { result: { fault, recovered: false, notes }, goOn: again.recovered };
}

/**
 * The end of each fault: wait for the run to recover by itself. A run that paused instead has
 * not recovered; the drill then resumes it, as its user would, so that the faults after it
 * still run, and says so in the fault's notes.
 */
import type { DrillContext, FaultResult } from './context.js';
import { readRun, waitFor, waitForRecovery, type Recovery } from './observe.js';
import { logTail } from './pgferry.js';

/** A fault's result, and whether the drill can go on with the next one. */
export interface Settled {
  result: FaultResult;
  goOn: boolean;
}

/** A note of at most `length` characters. */
export const brief = (text: string, length = 160) => (text.length > length ? `${text.slice(0, length - 1)}…` : text);

/**
 * Starts `pgferry resume SPEC` as a user does (a new child process, followed like the first
 * run) and waits until it has taken the run over (a new execution, no longer paused);
 * undefined once it has, else why not.
 */
export async function resume(context: DrillContext): Promise<string | undefined> {
  const before = (await readRun(context))?.execution;
  context.say('pgferry resume SPEC');
  const run = context.cli.follow('resume');
  context.runs.push(run);
  let exited: number | null | undefined;
  void run.exited.then((code) => (exited = code));
  const taken = await waitFor(context, context.options.recoveryTimeoutSeconds, async () => {
    if (exited !== undefined) return 'exited';
    const view = await readRun(context);
    return view && view.execution !== before && view.phase !== 'paused' ? 'taken' : undefined;
  });
  if (taken === 'taken') return undefined;
  return taken === 'exited' ? `pgferry resume SPEC ended (exit ${exited}): ${logTail(run.logFile)}` : 'pgferry resume SPEC did not take the run over';
}

/** `pgferry resume SPEC`, then the wait for recovery. */
export async function resumeAndRecover(context: DrillContext, fault: string): Promise<Recovery> {
  const notTaken = await resume(context);
  return notTaken ? { recovered: false, seconds: 0, why: notTaken, paused: false } : waitForRecovery(context, fault);
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
  notes.push(brief(recovery.why));
  if (!recovery.paused) return { result: { fault, recovered: false, notes }, goOn: false };
  const again = await resumeAndRecover(context, `${fault} (resumed by the drill)`);
  notes.push(again.recovered ? `the drill resumed it: streaming again ${again.seconds} s later` : brief(`the drill's resume did not recover it: ${again.why}`));
  return { result: { fault, recovered: false, notes }, goOn: again.recovered };
}

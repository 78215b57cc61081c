/**
 * The drill's course on one live migration: `pgferry run SPEC` until it streams, the faults in
 * turn, then the load stops, `pgferry cutover SPEC`, and the run ends.
 */
import { sleep } from '../../../engine/sql.js';
import type { DrillContext, FaultResult } from './context.js';
import { forcedConflict, runnerKill, sourceRestart, targetOutage } from './faults.js';
import { replicateKills, schemaChanges } from './faults-more.js';
import { waitForPhase, waitForRecovery } from './observe.js';
import { FAULTS, type FaultId } from './options.js';
import { logTail } from './pgferry.js';
import type { Settled } from './settle.js';

const INJECT: Record<FaultId, { title: string; inject: (context: DrillContext) => Promise<Settled> }> = {
  'target-outage': { title: 'target outage', inject: targetOutage },
  'source-restart': { title: 'source restart', inject: sourceRestart },
  ddl: { title: 'ADD COLUMN, ALTER TYPE, CREATE TABLE', inject: schemaChanges },
  'replicate-kills': { title: '5 SIGKILLs of the replicate task', inject: replicateKills },
  'runner-kill': { title: 'SIGKILL of the runner, then resume', inject: runnerKill },
  conflict: { title: 'conflict pauses the run, then resume', inject: forcedConflict },
};

export class DrillStopped extends Error {
  constructor() {
    super('The drill was stopped (Ctrl-C or SIGTERM).');
  }
}

function checkNotStopped(context: DrillContext): void {
  if (context.signal.aborted) throw new DrillStopped();
}

/** Starts the migration through `pgferry run SPEC` and waits until it streams (after the full load); undefined when it does. */
export async function startMigration(context: DrillContext): Promise<string | undefined> {
  context.say('pgferry run SPEC (full load, then CDC)…');
  const run = context.cli.follow('run');
  context.runs.push(run);
  // A run that ends before it streams (a refused spec, a failed load) ends the wait.
  const ended = new AbortController();
  void run.exited.then(() => ended.abort());
  const first = await waitForRecovery({ ...context, signal: AbortSignal.any([context.signal, ended.signal]) }, 'first run');
  checkNotStopped(context);
  if (first.recovered) {
    context.say(`the migration streams (${first.seconds} s after start)`);
    return undefined;
  }
  const why = ended.signal.aborted ? `pgferry run ended (exit ${await run.exited})` : first.why;
  return `the migration did not reach streaming: ${why}; its output ends: ${logTail(run.logFile)}`;
}

/** The table's rows when the drill never got to the faults. */
export function faultsNotRun(context: DrillContext): FaultResult[] {
  return FAULTS.map((id) =>
    context.options.skip.includes(id)
      ? { fault: INJECT[id].title, recovered: false, skipped: true, notes: ['--skip'] }
      : { fault: INJECT[id].title, recovered: false, notes: ['not run: the migration never streamed'] },
  );
}

/** Injects every fault not skipped, in turn; once one leaves the run unable to go on, the rest are not run. */
export async function injectFaults(context: DrillContext): Promise<FaultResult[]> {
  const results: FaultResult[] = [];
  let goOn = true;
  for (const id of FAULTS) {
    const { title, inject } = INJECT[id];
    if (context.options.skip.includes(id)) {
      results.push({ fault: title, recovered: false, skipped: true, notes: ['--skip'] });
      continue;
    }
    if (!goOn) {
      results.push({ fault: title, recovered: false, notes: ['not run: the run could not go on after an earlier fault'] });
      continue;
    }
    const settled = await inject(context);
    checkNotStopped(context);
    results.push(settled.result);
    goOn = settled.goOn;
    await sleep(5_000, context.signal);
  }
  return results;
}

/** `pgferry cutover SPEC`, then waits for the run to end; undefined when it ended done, else why not. */
export async function cutOver(context: DrillContext): Promise<string | undefined> {
  context.say('pgferry cutover SPEC…');
  const requested = await context.cli.command('cutover');
  if (requested.code !== 0) return `pgferry cutover SPEC failed (exit ${requested.code}): ${requested.output}`;
  const run = context.runs.at(-1)!;
  // A run that pauses after the cutover (a failed comparison) waits for a person: its runner does not end.
  const ended = await waitForPhase(context, ['done', 'paused', 'failed'], 15 * 60);
  checkNotStopped(context);
  if (!ended) return `the run did not end within 15 minutes of the cutover request: ${logTail(run.logFile)}`;
  if (ended.phase !== 'done') return `the run ${ended.phase} after the cutover request: ${ended.error}`;
  const exitCode = await Promise.race([run.exited, sleep(60_000, context.signal).then(() => 'still running' as const)]);
  return exitCode === 0 ? undefined : `the run is done but pgferry ${run.command} did not exit 0 (${exitCode}): ${logTail(run.logFile)}`;
}

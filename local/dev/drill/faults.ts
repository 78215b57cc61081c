/**
 * The drill's faults, injected in turn on the live migration; each ends by waiting for the run
 * to recover (settle.ts). The DDL fault and the replicate-task kills are in faults-more.ts.
 */
import { messageOf, sleep } from '../../../engine/sql.js';
import type { DrillContext } from './context.js';
import { readRun, waitFor, waitForPhase } from './observe.js';
import { drillProcesses, processAlive, replicateTasks, signalProcesses } from './processes.js';
import { DRILL_DATABASE } from './setup.js';
import { brief, resume, settle, type Settled } from './settle.js';

const since = (started: number) => Math.round((Date.now() - started) / 100) / 10;

/** 1. The target stops for `outageSeconds` (a failover, a restart), then comes back. */
export async function targetOutage(context: DrillContext): Promise<Settled> {
  const fault = `target outage ${context.options.outageSeconds} s`;
  context.say(`${fault}: stopping the target…`);
  const started = Date.now();
  await context.target.stopServer();
  await sleep(context.options.outageSeconds * 1000, context.signal);
  if (context.signal.aborted) return { result: { fault, recovered: false, notes: ['the drill was stopped'] }, goOn: false };
  await context.target.startServer();
  return settle(context, fault, [`target down ${since(started)} s (cdc.retryWindowMinutes ${context.options.retryWindowMinutes})`]);
}

/** 2. The source restarts (fast shutdown, start): the walsender and every session end. */
export async function sourceRestart(context: DrillContext): Promise<Settled> {
  const fault = 'source restart';
  context.say(`${fault}…`);
  const started = Date.now();
  await context.source.stopServer();
  await context.source.startServer();
  return settle(context, fault, [`source down ${since(started)} s`]);
}

/** `pgferry resume SPEC`, then the wait for recovery, timed from the takeover. */
async function resumeThenSettle(context: DrillContext, fault: string, notes: string[]): Promise<Settled> {
  const started = Date.now();
  const notTaken = await resume(context);
  if (notTaken) return { result: { fault, recovered: false, notes: [...notes, brief(notTaken)] }, goOn: false };
  notes.push(`resume took the run over in ${since(started)} s`);
  return settle(context, fault, notes);
}

/** The runner's process id, once it is one of the drill's processes (never another's). */
async function drillRunnerPid(context: DrillContext): Promise<number | undefined> {
  return waitFor(context, 60, async () => {
    const pid = (await readRun(context))?.runnerPid ?? undefined;
    return pid !== undefined && drillProcesses(context.drillId).some((p) => p.pid === pid) ? pid : undefined;
  });
}

/** 5. The runner is SIGKILLed (its pid from pgferry.migrations.runner_pid); `status` must say it is gone; then `pgferry resume SPEC`. */
export async function runnerKill(context: DrillContext): Promise<Settled> {
  const fault = 'SIGKILL of the runner, then resume';
  const pid = await drillRunnerPid(context);
  if (pid === undefined) return { result: { fault, recovered: false, notes: ['no runner of the drill found in pgferry.migrations.runner_pid'] }, goOn: false };
  const orphans = replicateTasks(context.drillId).map((p) => p.pid);
  context.say(`${fault}: kill -KILL ${pid}`);
  const killed = Date.now();
  signalProcesses([pid], 'SIGKILL');
  const notes = [`runner ${pid} killed`];
  const gone = await waitFor(context, 90, async () => {
    const status = await context.cli.command('status');
    return status.code !== 0 && /runner.*is gone/s.test(status.output) ? true : undefined;
  });
  notes.push(gone ? `status said the runner is gone after ${since(killed)} s` : 'status did NOT say the runner is gone within 90 s');
  const settled = await resumeThenSettle(context, fault, notes);
  const left = orphans.filter(processAlive);
  settled.result.notes.push(left.length === 0 ? `its replicate task (${orphans.join(', ') || 'none'}) exited` : `its replicate task ${left.join(', ')} is still alive`);
  if (!gone || left.length > 0) settled.result.recovered = false;
  return settled;
}

async function slotCount(context: DrillContext): Promise<number> {
  const [result] = await context.source.sql("SELECT slot_name FROM pg_replication_slots WHERE slot_name LIKE 'pgferry%'");
  return result?.rowCount ?? 0;
}

/** 6. A row on the target that the source then inserts too (conflictPolicy "error"): the run must pause with its slot kept; fix the row, resume. */
export async function forcedConflict(context: DrillContext): Promise<Settled> {
  const fault = 'conflict pauses the run, then resume';
  const notes: string[] = [];
  const pausedRun = context.runs.at(-1);
  context.say(`${fault}: inserting drill_conflict id 1 on the target, then on the source…`);
  await context.target.sql("INSERT INTO public.drill_conflict (id, note) VALUES (1, 'on the target only')", DRILL_DATABASE);
  await context.source.sql("INSERT INTO public.drill_conflict (id, note) VALUES (1, 'from the source')", DRILL_DATABASE);
  const paused = await waitForPhase(context, ['paused', 'failed'], context.options.recoveryTimeoutSeconds);
  if (paused?.phase !== 'paused') {
    notes.push(paused ? brief(`the run ${paused.phase}: ${paused.error}`) : 'the run did not pause');
    return { result: { fault, recovered: false, notes }, goOn: false };
  }
  const slots = await slotCount(context);
  notes.push(`paused (${brief(paused.error ?? '', 120)}), slots kept ${slots}`);
  await context.target.sql('DELETE FROM public.drill_conflict WHERE id = 1', DRILL_DATABASE);
  const settled = await resumeThenSettle(context, fault, notes);
  const handedOver = pausedRun && (await Promise.race([pausedRun.exited.then(() => true), sleep(60_000, context.signal).then(() => false)]));
  settled.result.notes.push(handedOver ? 'the paused runner handed over and ended' : 'the paused runner did NOT end');
  if (slots !== 1 || !handedOver) settled.result.recovered = false;
  return settled;
}

/** Runs `statement` under load, retrying when its lock waits too long behind the load's transactions. */
export async function underLoad(context: DrillContext, statement: string): Promise<void> {
  for (let attempt = 1; ; attempt++) {
    try {
      await context.source.sql(`SET lock_timeout = '5s'; ${statement}`, DRILL_DATABASE);
      return;
    } catch (error) {
      if (attempt >= 10 || !/lock timeout/i.test(messageOf(error))) throw error;
    }
  }
}

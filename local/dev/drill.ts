/**
 * `npm run drill`: a fault drill on one live full+cdc migration (PostgreSQL 15 → 17) under
 * pgbench load, driven through the pgferry command line as a user drives it. It injects, in
 * turn, a target outage, a source restart, DDL, replicate-task kills, a runner kill with resume
 * and a conflict that pauses the run with resume; then cuts over and checks: rows lost 0, rows
 * duplicated 0, full reloads 0, slots left 0, no process left. Exit code 1 when any fault did
 * not recover or any check failed. Everything it starts is stopped, also on failure and Ctrl-C.
 * Not part of `npm test` (it takes minutes); docs/contributing.md, "The fault drill".
 */
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { messageOf } from '../../engine/sql.js';
import { stopAllClusters, type LocalCluster } from './cluster.js';
import type { DrillContext, FaultResult } from './drill/context.js';
import { startLoad, type DrillLoad } from './drill/load.js';
import { DRILL_HELP, FAULTS, parseDrillOptions, type DrillOptions } from './drill/options.js';
import { PgferryCli } from './drill/pgferry.js';
import { drillProcesses, signalProcesses } from './drill/processes.js';
import { ReloadBaseline } from './drill/reloads.js';
import { comparisonTable, faultTable, summaryLine, verdictNotes } from './drill/report.js';
import { cutOver, faultsNotRun, injectFaults, startMigration } from './drill/sequence.js';
import { createDrillDatabase, startDrillClusters, writeDrillSpec } from './drill/setup.js';
import { verdictPassed, verify, type Verdict } from './drill/verify.js';

const say = (line: string) => process.stderr.write(`[drill ${new Date().toISOString().slice(11, 19)}] ${line}\n`);

interface Outcome {
  results: FaultResult[];
  verdict?: Verdict;
  /** Why the drill could not finish its course (the run never streamed, the cutover failed). */
  broken?: string;
}

/** The drill's course once the clusters run: migration, faults, cutover, checks. */
async function course(context: DrillContext, load: DrillLoad, setBaseline: (baseline: ReloadBaseline) => void): Promise<Outcome> {
  const notStreaming = await startMigration(context);
  if (notStreaming) return { results: faultsNotRun(context), broken: notStreaming };
  const baseline = await ReloadBaseline.take(context.target, context.name);
  setBaseline(baseline);
  const results = await injectFaults(context);
  const stats = await load.stop();
  say(`load stopped: ${stats.workloadTransactions} workload transactions, pgbench and workload started again ${stats.restarts} times after faults`);
  const broken = await cutOver(context);
  say(`${broken ? 'the run did not end done' : 'the run ended done'}; comparing every table, checking reloads, slots and processes…`);
  try {
    return { results, broken, verdict: await verify(context.source, context.target, baseline, context.drillId) };
  } catch (error) {
    return { results, broken: [broken, `the checks failed: ${messageOf(error)}`].filter(Boolean).join('; ') };
  }
}

function printOutcome({ results, verdict, broken }: Outcome): boolean {
  const planned = FAULTS.length - results.filter((result) => result.skipped).length;
  process.stdout.write(`\n${faultTable(results)}\n\n`);
  if (verdict) process.stdout.write(`${comparisonTable(verdict)}\n\n`);
  for (const note of [...(broken ? [broken] : []), ...(verdict ? verdictNotes(verdict) : [])]) process.stdout.write(`${note}\n`);
  process.stdout.write(`${summaryLine(results, planned, verdict)}\n`);
  const recovered = results.filter((result) => result.recovered).length === planned;
  return !broken && recovered && verdict !== undefined && verdictPassed(verdict);
}

/** After a failure: the commands' output stays for reading, the secret files go. */
async function keepOutputOnly(workDir: string): Promise<void> {
  await Promise.all(['source', 'target'].map((side) => rm(join(workDir, `${side}.secret.json`), { force: true })));
  say(`the commands' output is kept in ${workDir}`);
}

async function drill(options: DrillOptions, signal: AbortSignal): Promise<boolean> {
  const workDir = await mkdtemp(join(tmpdir(), 'pgferry-drill-'));
  const drillId = randomBytes(8).toString('hex');
  let load: DrillLoad | undefined;
  let cli: PgferryCli | undefined;
  let passed = false;
  try {
    say('starting PostgreSQL 15 (source) and 17 (target)…');
    const [source, target]: LocalCluster[] = await startDrillClusters();
    await createDrillDatabase(source!, target!);
    const name = `drill-${drillId.slice(0, 6)}`;
    cli = new PgferryCli(await writeDrillSpec(workDir, name, source!, target!, options), workDir, drillId);
    load = startLoad(source!, options);
    say(`load: ${load.description}; the commands' output goes to ${workDir}`);
    let baseline: ReloadBaseline | undefined;
    const context: DrillContext = {
      source: source!,
      target: target!,
      name,
      drillId,
      cli,
      options,
      signal,
      runs: [],
      say,
      rewrote: async (table) => baseline?.retake(target!, table),
    };
    passed = printOutcome(await course(context, load, (taken) => (baseline = taken)));
    return passed;
  } finally {
    await load?.stop().catch(() => undefined);
    await cli?.stopAll();
    signalProcesses(drillProcesses(drillId).map((p) => p.pid), 'SIGKILL');
    await stopAllClusters();
    if (passed) await rm(workDir, { recursive: true, force: true });
    else await keepOutputOnly(workDir);
  }
}

async function main(argv: string[]): Promise<number> {
  let options: DrillOptions | 'help';
  try {
    options = parseDrillOptions(argv);
  } catch (error) {
    process.stderr.write(`${messageOf(error)}\n\n${DRILL_HELP}`);
    return 2;
  }
  if (options === 'help') {
    process.stdout.write(DRILL_HELP);
    return 0;
  }
  const abort = new AbortController();
  const onSignal = () => {
    say('stopping: every process and cluster the drill started…');
    abort.abort();
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  try {
    return (await drill(options, abort.signal)) ? 0 : 1;
  } catch (error) {
    say(`the drill failed: ${messageOf(error)}`);
    return 1;
  }
}

process.exit(await main(process.argv.slice(2)));

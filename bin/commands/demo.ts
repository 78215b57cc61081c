/**
 * `npm run demo`: two throwaway PostgreSQL servers (source 15, target 17), a sample database
 * on the source with an application writing to it the whole time, and the full+cdc migration
 * workflow run against them through the local runner: load, catch up, a few seconds of live
 * replication, then cutover (what `pgferry cutover` asks for), which fences the source, drains,
 * and compares. Everything it starts is stopped when it ends, also on Ctrl-C.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { readReplicationStatus, requestCutover } from '../../engine/control/index.js';
import { startClusters, stopAllClusters, type LocalCluster } from '../../local/dev/cluster.js';
import { createSampleDatabase, SAMPLE_DATABASE } from '../../local/dev/sample-database.js';
import { createWorkloadSchema, startWorkload, type RunningWorkload } from '../../local/dev/workload.js';
import type { Out } from '../format.js';
import { createProgress } from '../progress.js';
import { runMigration } from '../run-migration.js';
import { sleep } from '../../engine/sql.js';

/** Rows of the sample database times this: enough data to watch the load's progress bars move. */
const DEMO_SCALE = 25;
/** The demo's application: pgbench-like transactions per second against the source. */
const WRITES_PER_SECOND = 200;
/** How long the demo shows live replication at low lag before it asks for cutover. */
const LIVE_SECONDS = 8;

async function writeSecret(dir: string, name: string, cluster: LocalCluster): Promise<string> {
  const path = join(dir, `${name}.json`);
  const { host, port, username, password } = cluster.connection;
  await writeFile(path, JSON.stringify({ host, port, username, password, dbname: SAMPLE_DATABASE }), { mode: 0o600 });
  return `file:${path}`;
}

export async function runDemo(out: Out, err: Out): Promise<number> {
  const progress = createProgress();
  const abort = new AbortController();
  const onSignal = () => {
    progress.note('Stopping…');
    abort.abort();
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  const workDir = await mkdtemp(join(tmpdir(), 'pgferry-demo-'));
  let workload: RunningWorkload | undefined;
  try {
    progress.note('Starting PostgreSQL 15 (source) and PostgreSQL 17 (target)…');
    const [source, target] = await startClusters([
      { major: 15, label: 'demo-source' },
      { major: 17, label: 'demo-target' },
    ]);
    progress.note(`Source on 127.0.0.1:${source.connection.port}, target on 127.0.0.1:${target.connection.port}.`);
    progress.note(`Creating the sample database "${SAMPLE_DATABASE}" on the source…`);
    const summary = await createSampleDatabase(source, DEMO_SCALE);
    progress.note(`Sample database: ${summary.tables} tables, ${summary.rows} rows.`);
    const setup = await source.connect(SAMPLE_DATABASE);
    await createWorkloadSchema(setup, { scale: 1 }).finally(() => setup.end());
    await target.sql(`CREATE DATABASE ${SAMPLE_DATABASE}`);
    workload = startWorkload(() => source.connect(SAMPLE_DATABASE), { clients: 2, ratePerSecond: WRITES_PER_SECOND });
    progress.note(`An application now writes to the source (about ${WRITES_PER_SECOND} transactions/s) until cutover fences it.`);

    const spec = {
      name: 'demo-shop',
      description: 'The pgferry demo: a live sample shop database from PostgreSQL 15 to 17',
      mode: 'full+cdc',
      fullLoad: { parallelism: 4 },
      source: { secret: await writeSecret(workDir, 'source', source) },
      target: { secret: await writeSecret(workDir, 'target', target) },
      cutover: { mode: 'manual', fenceSource: true, maxLagSeconds: 2 },
    };
    progress.note(`Running the migration workflow (state-machines/migration.asl.json) for "${spec.name}"…`);
    progress.stop();
    const migration = runMigration(spec, { signal: abort.signal, out, err });
    const cutover = cutOverWhenLive(target, spec.name, abort.signal, (line) => err.write(`${line}\n`));
    const { exitCode } = await migration;
    cutover.cancel();
    const stats = await workload.stop();
    out.write(`The application committed ${stats.transactions} transactions on the source during the migration${stats.stoppedBecause ? ` (${stats.stoppedBecause})` : ''}.\n`);
    return exitCode;
  } finally {
    await workload?.stop().catch(() => undefined);
    progress.stop();
    await stopAllClusters();
    await rm(workDir, { recursive: true, force: true });
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
}

/** Asks for cutover once replication has run live, at low lag, for LIVE_SECONDS: what a person does with `pgferry cutover`. */
function cutOverWhenLive(target: LocalCluster, name: string, signal: AbortSignal, say: (line: string) => void): { cancel(): void } {
  let cancelled = false;
  void (async () => {
    const control = await target.connect(SAMPLE_DATABASE);
    control.on('error', () => undefined);
    try {
      let liveSince: number | undefined;
      while (!cancelled && !signal.aborted) {
        const status = await readReplicationStatus(control, name).catch(() => undefined);
        const live = status?.streamingSince && (status.lagSeconds ?? Infinity) < 1;
        liveSince = live ? (liveSince ?? Date.now()) : undefined;
        if (liveSince !== undefined && Date.now() - liveSince >= LIVE_SECONDS * 1000) {
          say(`Replication has been live for ${LIVE_SECONDS} s: requesting cutover (what "pgferry cutover" does).`);
          await requestCutover(control, name);
          return;
        }
        await sleep(250);
      }
    } finally {
      await control.end().catch(() => undefined);
    }
  })().catch(() => undefined);
  return { cancel: () => (cancelled = true) };
}

/**
 * `npm run demo`: two throwaway PostgreSQL servers (source 15, target 17), a sample database
 * on the source, and the migration workflow run against them through the local runner.
 * Everything it starts is stopped when it ends, also on Ctrl-C.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startClusters, stopAllClusters, type LocalCluster } from './cluster.js';
import { createProgress } from './progress.js';
import { runMigration } from './run.js';
import { createSampleDatabase, SAMPLE_DATABASE } from './sample-database.js';

type Out = Pick<NodeJS.WriteStream, 'write'>;

/** Rows of the sample database times this: enough data to watch the load's progress bars move. */
const DEMO_SCALE = 25;

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
    await target.sql(`CREATE DATABASE ${SAMPLE_DATABASE}`);

    const spec = {
      name: 'demo-shop',
      description: 'The pgferry demo: a sample shop database from PostgreSQL 15 to 17',
      mode: 'full',
      fullLoad: { parallelism: 4 },
      source: { secret: await writeSecret(workDir, 'source', source) },
      target: { secret: await writeSecret(workDir, 'target', target) },
    };
    progress.note(`Running the migration workflow (state-machines/migration.asl.json) for "${spec.name}"…`);
    progress.stop();
    return (await runMigration(spec, { signal: abort.signal, out, err })).exitCode;
  } finally {
    progress.stop();
    await stopAllClusters();
    await rm(workDir, { recursive: true, force: true });
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
}

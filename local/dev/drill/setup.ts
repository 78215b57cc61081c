/**
 * The drill's databases: a PostgreSQL 15 source and a 17 target (as the demo), the workload
 * schema on the source (pgbench's tables, a keyless table with REPLICA IDENTITY FULL, a
 * TOASTed table…) plus the drill's own tables, and the spec of its live migration.
 */
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { startClusters, type LocalCluster } from '../cluster.js';
import { createWorkloadSchema } from '../workload.js';
import type { DrillOptions } from './options.js';

export const DRILL_DATABASE = 'drill';

/** The drill's own tables: markers it writes after each fault (to see them applied), and the table of the forced conflict. */
const DRILL_TABLES = `
  CREATE TABLE public.drill_marks (id int PRIMARY KEY, fault text NOT NULL, at timestamptz NOT NULL DEFAULT clock_timestamp());
  CREATE TABLE public.drill_conflict (id int PRIMARY KEY, note text NOT NULL);
`;

export async function startDrillClusters(): Promise<[LocalCluster, LocalCluster]> {
  const [source, target] = await startClusters([
    { major: 15, label: 'drill-source' },
    { major: 17, label: 'drill-target' },
  ]);
  return [source!, target!];
}

export async function createDrillDatabase(source: LocalCluster, target: LocalCluster): Promise<void> {
  await source.sql(`CREATE DATABASE ${DRILL_DATABASE}`);
  await target.sql(`CREATE DATABASE ${DRILL_DATABASE}`);
  const client = await source.connect(DRILL_DATABASE);
  try {
    await createWorkloadSchema(client, { scale: 1 });
    await client.query(DRILL_TABLES);
  } finally {
    await client.end();
  }
}

async function writeSecret(dir: string, name: string, cluster: LocalCluster): Promise<string> {
  const path = join(dir, `${name}.secret.json`);
  const { host, port, username, password } = cluster.connection;
  await writeFile(path, JSON.stringify({ host, port, username, password, dbname: DRILL_DATABASE }), { mode: 0o600 });
  return `file:${path}`;
}

/** Writes the spec of the drill's migration into `dir`; returns its path. */
export async function writeDrillSpec(dir: string, name: string, source: LocalCluster, target: LocalCluster, options: DrillOptions): Promise<string> {
  const spec = {
    name,
    description: 'pgferry fault drill (npm run drill): a live migration under load, through faults, to cutover',
    mode: 'full+cdc',
    source: { secret: await writeSecret(dir, 'source', source) },
    target: { secret: await writeSecret(dir, 'target', target) },
    fullLoad: { parallelism: 2 },
    cdc: { conflictPolicy: 'error', retryWindowMinutes: options.retryWindowMinutes, heartbeatTimeoutSeconds: 20 },
    cutover: { mode: 'manual', fenceSource: true, maxLagSeconds: 5 },
  };
  const path = join(dir, 'drill.spec.json');
  await writeFile(path, JSON.stringify(spec, null, 2));
  return path;
}

/**
 * The one read of a migration's progress that status, the live watch and the report share:
 * its run, each planned table's load, the comparisons, and the CDC status. Plain data; each
 * view shapes and formats it itself.
 */
import type pg from 'pg';
import { readAfterCutover, type AfterCutoverRow } from './after-cutover.js';
import { comparisonSummaries, type ComparisonSummary } from './comparisons.js';
import { migrationRun, type MigrationRun } from './migrations.js';
import { readReplicationStatus, type ReplicationStatusRow } from './replication.js';
import { readRetainedWal, type RetainedWalRow } from './retained-wal.js';
import { controlSchemaExists } from './schema.js';
import { loadSeconds, tableProgress, type TableProgress } from './units.js';

export interface MigrationProgress {
  name: string;
  run: MigrationRun;
  /** The planned tables, by source schema and name. */
  tables: TableProgress[];
  /** From the first unit's start until the last unit done finished, over all tables. */
  loadSeconds: number;
  /** By source schema and name. */
  comparisons: ComparisonSummary[];
  /** CDC modes, once the slot is registered. */
  replication?: ReplicationStatusRow;
  /** The WAL the slot holds back on the source, as last measured. */
  retainedWal?: RetainedWalRow;
  /** After cutover: the reverse stream, a fallback or finish. */
  afterCutover?: AfterCutoverRow;
}

/** A migration's progress; undefined when the target has no record of it. */
export async function readProgress(target: pg.Client, name: string): Promise<MigrationProgress | undefined> {
  if (!(await controlSchemaExists(target))) return undefined;
  const run = await migrationRun(target, name);
  if (!run) return undefined;
  const tables = await tableProgress(target, name);
  const seconds = await loadSeconds(target, name);
  const comparisons = await comparisonSummaries(target, name);
  const replication = await readReplicationStatus(target, name);
  const retainedWal = replication ? await readRetainedWal(target, name) : undefined;
  const afterCutover = replication ? await readAfterCutover(target, name) : undefined;
  return {
    name,
    run,
    tables,
    loadSeconds: seconds,
    comparisons,
    ...(replication ? { replication } : {}),
    ...(retainedWal ? { retainedWal } : {}),
    ...(afterCutover ? { afterCutover } : {}),
  };
}

/**
 * A migration's status as `pgferry status` and the live progress show it: phase, load progress
 * per table, CDC lag and apply rate, last error. Read only, from the progress read model
 * (control/progress.ts); a cutover request is in cutover/request.ts.
 */
import type pg from 'pg';
import { readFlowStatus, readProgress, type AfterCutoverRow, type FlowStatus, type MigrationProgress, type ReplicationStatusRow, type RetainedWalRow } from './control/index.js';
import { qualified } from './sql.js';

export interface MigrationStatus {
  name: string;
  phase: string;
  error: string | null;
  tables: { table: string; unitsDone: number; units: number; rows: number; bytes: number }[];
  comparison?: { tables: number; matching: number; differing: string[] };
  replication?: ReplicationStatusRow;
  /** The WAL the slot holds back on the source, as last measured. */
  retainedWal?: RetainedWalRow;
  afterCutover?: AfterCutoverRow;
  /** Flow control (issue 15, item 3): the limits in force and the workers sharing them; only when a limit is set. */
  flow?: FlowStatus;
}

export async function readMigrationStatus(target: pg.Client, name: string): Promise<MigrationStatus | undefined> {
  const progress = await readProgress(target, name);
  if (!progress) return undefined;
  const flow = await readFlowStatus(target, name);
  return { ...migrationStatus(progress), ...(flow && limited(flow) ? { flow } : {}) };
}

/** Whether a limit is in force, or was changed by pgferry throttle (lifted, it is still worth a line). */
function limited(flow: FlowStatus): boolean {
  return [flow.load, flow.cdc].some((phase) => phase.throttled || phase.limits.rowsPerSecond !== undefined || phase.limits.bytesPerSecond !== undefined);
}

/** The status view of a migration's progress: the tables the load has units for, the comparisons in short. */
export function migrationStatus(progress: MigrationProgress): MigrationStatus {
  const { run, comparisons, replication, retainedWal, afterCutover } = progress;
  return {
    name: progress.name,
    phase: run.phase,
    error: run.error,
    tables: progress.tables
      .filter((t) => t.units > 0)
      .map((t) => ({ table: qualified(t.source), unitsDone: t.unitsDone, units: t.units, rows: t.rows, bytes: t.bytes })),
    ...(replication ? { replication } : {}),
    ...(retainedWal ? { retainedWal } : {}),
    ...(afterCutover ? { afterCutover } : {}),
    ...(comparisons.length
      ? {
          comparison: {
            tables: comparisons.length,
            matching: comparisons.filter((c) => c.status === 'match').length,
            differing: comparisons.filter((c) => c.status !== 'match').map((c) => qualified(c.source)),
          },
        }
      : {}),
  };
}


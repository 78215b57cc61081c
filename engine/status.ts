/**
 * A migration's status as `pgferry status` and the live progress show it: phase, load progress
 * per table, CDC lag and apply rate, last error. Read only, from the progress read model
 * (control/progress.ts); a cutover request is in cutover/request.ts.
 */
import type pg from 'pg';
import { readProgress, type MigrationProgress, type ReplicationStatusRow } from './control/index.js';
import { formatBytes } from './report.js';
import { qualified } from './sql.js';

export interface MigrationStatus {
  name: string;
  phase: string;
  error: string | null;
  tables: { table: string; unitsDone: number; units: number; rows: number; bytes: number }[];
  comparison?: { tables: number; matching: number; differing: string[] };
  replication?: ReplicationStatusRow;
}

export async function readMigrationStatus(target: pg.Client, name: string): Promise<MigrationStatus | undefined> {
  const progress = await readProgress(target, name);
  return progress && migrationStatus(progress);
}

/** The status view of a migration's progress: the tables the load has units for, the comparisons in short. */
export function migrationStatus(progress: MigrationProgress): MigrationStatus {
  const { run, comparisons, replication } = progress;
  return {
    name: progress.name,
    phase: run.phase,
    error: run.error,
    tables: progress.tables
      .filter((t) => t.units > 0)
      .map((t) => ({ table: qualified(t.source), unitsDone: t.unitsDone, units: t.units, rows: t.rows, bytes: t.bytes })),
    ...(replication ? { replication } : {}),
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

const number = (value: number) => Math.round(value).toLocaleString('en-US');

/** One line: lag, apply rate, what has been applied, heartbeat. */
export function formatReplicationLine(r: ReplicationStatusRow): string {
  if (!r.streamingSince) return r.applyRequested ? 'CDC: starting the stream' : 'CDC: slot created, waiting for the full load';
  const lag = `lag ${(r.lagSeconds ?? 0).toFixed(1)} s / ${formatBytes(r.lagBytes ?? 0)}`;
  const rate = `${number(r.rowsPerSecond ?? 0)} rows/s`;
  const drain = r.drained ? ' · drained' : r.drainLsn ? ` · draining to ${r.drainLsn}` : r.cutoverRequested ? ' · cutover requested' : '';
  return `CDC: ${lag} · ${rate} · ${number(r.rowsApplied)} rows in ${number(r.transactionsApplied)} transactions applied (at ${r.appliedLsn ?? '-'})${drain}`;
}

export function formatStatus(status: MigrationStatus): string {
  const lines = [`Migration ${status.name}: ${status.phase}`];
  if (status.error) lines.push(`  last error: ${status.error}`);
  if (status.tables.length > 0) {
    const done = status.tables.filter((t) => t.unitsDone === t.units).length;
    lines.push(`  full load: ${done}/${status.tables.length} tables copied`);
    for (const t of status.tables) {
      lines.push(`    ${t.unitsDone === t.units ? '✓' : '…'} ${t.table.padEnd(40)} ${number(t.rows).padStart(12)} rows ${formatBytes(t.bytes).padStart(10)}`);
    }
  }
  const c = status.comparison;
  if (c) {
    const when = status.phase === 'replicate' ? ' (compared while replicating)' : '';
    lines.push(`  comparison: ${c.matching} of ${c.tables} tables match${c.differing.length ? `; differing: ${c.differing.join(', ')}` : ''}${when}`);
  }
  const r = status.replication;
  if (r) {
    lines.push(`  ${formatReplicationLine(r)}`);
    lines.push(`  slot ${r.slotName}, publication ${r.publicationName}; heartbeat ${r.heartbeatAgeSeconds === null ? '-' : `${r.heartbeatAgeSeconds.toFixed(1)} s ago`}; restarts ${r.restarts}`);
    if (r.lastError) lines.push(`  CDC error: ${r.lastError}`);
  }
  return lines.join('\n');
}

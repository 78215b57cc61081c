/**
 * The migration report, read from the control schema: schema objects per kind (and what was
 * not migrated), per-table rows, bytes, time, throughput and comparison result. The same JSON
 * feeds `pgferry run --report FILE`, the printed tables, and the status views.
 */
import type pg from 'pg';
import {
  notMigratedObjects,
  readProgress,
  schemaObjectCounts,
  type MigrationProgress,
  type ReplicationStatusRow,
} from './control/index.js';
import { qualified } from './sql.js';

export interface TableReport {
  table: string;
  target: string;
  rows: number;
  bytes: number;
  seconds: number;
  mbPerSecond: number;
  units: number;
  compare: 'match' | 'mismatch' | 'not compared';
  differences: number;
}

export interface ObjectKindReport {
  kind: string;
  counts: Record<string, number>;
}

export interface MigrationReport {
  migration: string;
  mode: string;
  phase: string;
  error: string | null;
  startedAt: string;
  finishedAt: string | null;
  seconds: number;
  objects: ObjectKindReport[];
  notMigrated: { kind: string; identity: string; detail: string | null }[];
  tables: TableReport[];
  totals: { tables: number; rows: number; bytes: number; loadSeconds: number; mbPerSecond: number };
  /** CDC modes: what was streamed and applied, and how cutover went. */
  replication?: ReplicationReport;
}

export interface ReplicationReport {
  slot: string;
  consistentLsn: string | null;
  appliedLsn: string | null;
  transactions: number;
  rows: number;
  restarts: number;
  fenced: boolean;
  /** Seconds from the cutover request until the target had applied the source's last change. */
  drainSeconds: number | null;
}

const MB = 1024 * 1024;
const rate = (bytes: number, seconds: number) => (seconds > 0 ? Math.round((bytes / MB / seconds) * 10) / 10 : 0);

/** Builds the report of a migration; undefined when the target has no record of it. */
export async function buildReport(target: pg.Client, migration: string): Promise<MigrationReport | undefined> {
  const progress = await readProgress(target, migration);
  if (!progress) return undefined;
  return reportOf(progress, await schemaObjectCounts(target, migration), await notMigratedObjects(target, migration));
}

const hundredths = (value: number) => Math.round(value * 100) / 100;

/** The report of a migration's progress and its schema objects. */
export function reportOf(
  progress: MigrationProgress,
  objects: ObjectKindReport[],
  notMigrated: MigrationReport['notMigrated'],
): MigrationReport {
  const { run } = progress;
  const compared = new Map(progress.comparisons.map((c) => [JSON.stringify([c.source.schema, c.source.name]), c]));
  const tables: TableReport[] = progress.tables.map((t) => {
    const comparison = compared.get(JSON.stringify([t.source.schema, t.source.name]));
    return {
      table: qualified(t.source),
      target: qualified(t.target),
      rows: t.rows,
      bytes: t.bytes,
      seconds: hundredths(t.seconds),
      mbPerSecond: rate(t.bytes, t.seconds),
      units: t.units,
      compare: comparison?.status ?? 'not compared',
      differences: comparison?.differences ?? 0,
    };
  });
  const rows = tables.reduce((sum, t) => sum + t.rows, 0);
  const bytes = tables.reduce((sum, t) => sum + t.bytes, 0);
  const loadSeconds = hundredths(progress.loadSeconds);
  return {
    migration: progress.name,
    mode: run.mode,
    phase: run.phase,
    error: run.error,
    startedAt: run.startedAt.toISOString(),
    finishedAt: run.finishedAt?.toISOString() ?? null,
    seconds: hundredths(run.seconds),
    objects,
    notMigrated,
    tables,
    totals: { tables: tables.length, rows, bytes, loadSeconds, mbPerSecond: rate(bytes, loadSeconds) },
    ...(progress.replication ? { replication: replicationReport(progress.replication) } : {}),
  };
}

function replicationReport(status: ReplicationStatusRow): ReplicationReport {
  return {
    slot: status.slotName,
    consistentLsn: status.consistentLsn,
    appliedLsn: status.appliedLsn,
    transactions: status.transactionsApplied,
    rows: status.rowsApplied,
    restarts: status.restarts,
    fenced: status.fenced,
    drainSeconds: status.drainSeconds === null ? null : hundredths(status.drainSeconds),
  };
}

function table(headers: string[], rows: string[][], rightAligned: Set<number>): string {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (cells: string[]) =>
    cells.map((c, i) => (rightAligned.has(i) ? c.padStart(widths[i]!) : c.padEnd(widths[i]!))).join('  ').trimEnd();
  return [line(headers), line(widths.map((w) => '─'.repeat(w))), ...rows.map(line)].join('\n');
}

export function formatBytes(bytes: number): string {
  if (bytes < 1024) return `${bytes} B`;
  const units = ['kB', 'MB', 'GB', 'TB'];
  let value = bytes / 1024;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return `${value.toFixed(1)} ${units[unit]}`;
}

/** The report as a person reads it in a terminal. */
export function formatReport(report: MigrationReport): string {
  const statuses = ['created', 'existing', 'truncated', 'replaced', 'skipped', 'not_migrated'];
  const used = statuses.filter((s) => report.objects.some((o) => o.counts[s]));
  const objects = table(
    ['object kind', ...used.map((s) => s.replace('_', ' '))],
    report.objects.map((o) => [o.kind, ...used.map((s) => String(o.counts[s] ?? 0))]),
    new Set(used.map((_, i) => i + 1)),
  );
  const tables = table(
    ['table', 'rows', 'bytes', 'time', 'MB/s', 'compare'],
    report.tables.map((t) => [
      t.table,
      String(t.rows),
      formatBytes(t.bytes),
      `${t.seconds.toFixed(2)} s`,
      t.mbPerSecond.toFixed(1),
      t.compare === 'mismatch' ? `MISMATCH (${t.differences})` : t.compare,
    ]),
    new Set([1, 2, 3, 4]),
  );
  const { totals } = report;
  const lines = [
    `Migration ${report.migration} (${report.mode}): ${report.phase}${report.error ? ` — ${report.error.split('\n')[0]}` : ''}`,
    '',
    objects,
  ];
  if (report.notMigrated.length > 0) {
    lines.push('', 'Not migrated:', ...report.notMigrated.map((o) => `  ${o.kind} ${o.identity}${o.detail ? `: ${o.detail}` : ''}`));
  }
  lines.push(
    '',
    tables,
    '',
    `${totals.tables} tables, ${totals.rows} rows, ${formatBytes(totals.bytes)} loaded in ${totals.loadSeconds.toFixed(2)} s (${totals.mbPerSecond.toFixed(1)} MB/s); whole run ${report.seconds.toFixed(1)} s.`,
  );
  const r = report.replication;
  if (r) {
    lines.push(
      `CDC: ${r.rows} rows in ${r.transactions} transactions applied from slot ${r.slot} (${r.consistentLsn ?? '-'} → ${r.appliedLsn ?? '-'})` +
        `${r.restarts ? `, ${r.restarts} streamer restart(s)` : ''}` +
        `${r.drainSeconds !== null ? `; cutover drained in ${r.drainSeconds.toFixed(1)} s${r.fenced ? ' behind a write fence (the source is left read-only)' : ''}` : ''}.`,
    );
  }
  return lines.join('\n');
}

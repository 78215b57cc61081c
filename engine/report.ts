/**
 * The migration report, read from the control schema: schema objects per kind (and what was
 * not migrated), per-table rows, bytes, time, throughput and comparison result. The same JSON
 * feeds `pgferry run --report FILE`, the printed tables, and the status views.
 */
import type pg from 'pg';
import { readReplicationStatus } from './cdc/state.js';
import { controlSchemaExists } from './control/index.js';

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
  if (!(await controlSchemaExists(target))) return undefined;
  const { rows: runs } = await target.query(
    `SELECT mode, phase, error, started_at, finished_at,
            extract(epoch FROM coalesce(finished_at, now()) - started_at)::float8 AS seconds
       FROM pgferry.migrations WHERE name = $1`,
    [migration],
  );
  const run = runs[0];
  if (!run) return undefined;
  const { rows: objectRows } = await target.query(
    `SELECT kind, status, count(*)::int AS n FROM pgferry.schema_objects WHERE migration = $1 GROUP BY 1, 2 ORDER BY 1, 2`,
    [migration],
  );
  const objects = new Map<string, Record<string, number>>();
  for (const row of objectRows) {
    if (!objects.has(row.kind)) objects.set(row.kind, {});
    objects.get(row.kind)![row.status] = row.n;
  }
  const { rows: notMigrated } = await target.query(
    `SELECT kind, identity, detail FROM pgferry.schema_objects WHERE migration = $1 AND status = 'not_migrated' ORDER BY kind, identity`,
    [migration],
  );
  const { rows: tableRows } = await target.query(
    `SELECT t.source_schema || '.' || t.source_table AS table, t.target_schema || '.' || t.target_table AS target,
            coalesce(sum(u.rows_copied), 0)::float8 AS rows, coalesce(sum(u.bytes_copied), 0)::float8 AS bytes,
            coalesce(extract(epoch FROM max(u.finished_at) - min(p.started_at)), 0)::float8 AS seconds,
            count(u.id)::int AS units, c.status AS compare,
            coalesce(jsonb_array_length(c.differences), 0) AS differences
       FROM pgferry.tables t
       LEFT JOIN pgferry.units u ON (u.migration, u.source_schema, u.source_table) = (t.migration, t.source_schema, t.source_table)
       LEFT JOIN pgferry.unit_progress p ON (p.migration, p.id) = (u.migration, u.id)
       LEFT JOIN pgferry.comparisons c ON (c.migration, c.source_schema, c.source_table) = (t.migration, t.source_schema, t.source_table)
      WHERE t.migration = $1
      GROUP BY t.source_schema, t.source_table, t.target_schema, t.target_table, c.status, c.differences
      ORDER BY t.source_schema, t.source_table`,
    [migration],
  );
  const { rows: window } = await target.query(
    `SELECT coalesce(extract(epoch FROM max(u.finished_at) - min(p.started_at)), 0)::float8 AS seconds
       FROM pgferry.units u JOIN pgferry.unit_progress p USING (migration, id) WHERE u.migration = $1`,
    [migration],
  );
  const tables: TableReport[] = tableRows.map((row) => ({
    table: row.table,
    target: row.target,
    rows: row.rows,
    bytes: row.bytes,
    seconds: Math.round(row.seconds * 100) / 100,
    mbPerSecond: rate(row.bytes, row.seconds),
    units: row.units,
    compare: row.compare ?? 'not compared',
    differences: row.differences,
  }));
  const replication = await replicationReport(target, migration);
  const rows = tables.reduce((sum, t) => sum + t.rows, 0);
  const bytes = tables.reduce((sum, t) => sum + t.bytes, 0);
  const loadSeconds = Math.round(window[0].seconds * 100) / 100;
  return {
    migration,
    mode: run.mode,
    phase: run.phase,
    error: run.error,
    startedAt: run.started_at.toISOString(),
    finishedAt: run.finished_at?.toISOString() ?? null,
    seconds: Math.round(run.seconds * 100) / 100,
    objects: [...objects].map(([kind, counts]) => ({ kind, counts })),
    notMigrated,
    tables,
    totals: { tables: tables.length, rows, bytes, loadSeconds, mbPerSecond: rate(bytes, loadSeconds) },
    ...(replication ? { replication } : {}),
  };
}

async function replicationReport(target: pg.Client, migration: string): Promise<ReplicationReport | undefined> {
  const status = await readReplicationStatus(target, migration);
  if (!status) return undefined;
  return {
    slot: status.slotName,
    consistentLsn: status.consistentLsn,
    appliedLsn: status.appliedLsn,
    transactions: status.transactionsApplied,
    rows: status.rowsApplied,
    restarts: status.restarts,
    fenced: status.fenced,
    drainSeconds: status.drainSeconds === null ? null : Math.round(status.drainSeconds * 100) / 100,
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

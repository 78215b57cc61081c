/**
 * Everything the CLI prints about a migration, as text for a terminal: precheck results, the
 * status and its replication line, the report, the live load's progress bars, how a local run
 * ended, an execution on AWS, and what a cleanup did. Pure functions of the data they are given.
 */
import type { MigrationProgress, ReplicationStatusRow } from '../engine/control/index.js';
import type { CleanupResult } from '../engine/steps/cleanup.js';
import type { CheckResult } from '../engine/precheck/index.js';
import type { MigrationReport } from '../engine/report.js';
import type { MigrationStatus } from '../engine/status.js';
import type { LocalRunResult } from '../local/runner/index.js';
import { isoSeconds } from '../platform/aws/names.js';
import type { RunDescription } from '../platform/aws/executions.js';
import { qualified } from '../engine/sql.js';

/** Where the CLI writes: stdout, stderr, or a test's capture of them. */
export type Out = Pick<NodeJS.WriteStream, 'write'>;

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

const number = (value: number) => Math.round(value).toLocaleString('en-US');

export function formatChecks(checks: CheckResult[]): string {
  const icon: Record<CheckResult['status'], string> = { pass: '✓', warn: '!', fail: '✗', skip: '-' };
  return checks
    .map((c) => `  ${icon[c.status]} ${c.id.padEnd(30)} ${c.message}${c.remediation ? `\n    ${''.padEnd(30)} Fix: ${c.remediation}` : ''}`)
    .join('\n');
}

// ---------------------------------------------------------------------------------------------
// Status

/** One line: lag, apply rate, what has been applied, heartbeat. */
export function formatReplicationLine(r: ReplicationStatusRow, { ended = false } = {}): string {
  if (!r.streamingSince) return r.applyRequested ? 'CDC: starting the stream' : 'CDC: slot created, waiting for the full load';
  const silent = ended ? undefined : silentStreamerLine(r);
  if (silent) return silent;
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
    lines.push(`  ${formatReplicationLine(r, { ended: ['done', 'failed', 'paused'].includes(status.phase) })}`);
    lines.push(`  slot ${r.slotName}, publication ${r.publicationName}; heartbeat ${r.heartbeatAgeSeconds === null ? '-' : `${r.heartbeatAgeSeconds.toFixed(1)} s ago`}; restarts ${r.restarts}`);
    if (r.lastError) lines.push(`  CDC error: ${r.lastError}`);
  }
  return lines.join('\n');
}

// ---------------------------------------------------------------------------------------------
// Live progress of a full load

const MAX_TABLE_LINES = 8;

export function bar(fraction: number, width = 24): string {
  const filled = Math.round(Math.max(0, Math.min(1, fraction)) * width);
  return `[${'█'.repeat(filled)}${'░'.repeat(width - filled)}]`;
}

/** One table's load so far: bytes estimated and copied, work units done of all, and whether one is being copied. */
export interface TableLoadProgress {
  table: string;
  estimated: number;
  copied: number;
  done: number;
  units: number;
  running: boolean;
}

/** An overall bar, then one bar per table being copied (at most MAX_TABLE_LINES). */
export function progressLines(rows: TableLoadProgress[]): string[] {
  if (rows.length === 0) return [];
  const estimated = rows.reduce((s, r) => s + Math.max(r.estimated, r.copied), 0);
  const copied = rows.reduce((s, r) => s + r.copied, 0);
  const tablesDone = rows.filter((r) => r.done === r.units).length;
  const overall = `${bar(estimated > 0 ? copied / estimated : tablesDone / rows.length)} ${formatBytes(copied)} / ~${formatBytes(estimated)} · ${tablesDone}/${rows.length} tables`;
  const active = rows
    .filter((r) => r.running && r.done < r.units)
    .slice(0, MAX_TABLE_LINES)
    .map((r) => `    ${bar(r.estimated > 0 ? r.copied / r.estimated : 0, 16)} ${r.table} ${formatBytes(r.copied)}`);
  return [overall, ...active];
}

/** What the live watch shows of a migration's progress: the load's bars while units are left, then the CDC line. */
export function progressDetail(progress: MigrationProgress | undefined): string[] {
  const rows = (progress?.tables ?? [])
    .filter((t) => t.units > 0)
    .map((t) => ({ table: qualified(t.source), estimated: t.estimatedBytes, copied: t.bytesSoFar, done: t.unitsDone, units: t.units, running: t.copying }));
  const loading = rows.some((r) => r.done < r.units);
  const replication = progress?.replication;
  return [...(loading ? progressLines(rows) : []), ...(replication ? [formatReplicationLine(replication)] : [])];
}

// ---------------------------------------------------------------------------------------------
// The report

function table(headers: string[], rows: string[][], rightAligned: Set<number>): string {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (cells: string[]) =>
    cells.map((c, i) => (rightAligned.has(i) ? c.padStart(widths[i]!) : c.padEnd(widths[i]!))).join('  ').trimEnd();
  return [line(headers), line(widths.map((w) => '─'.repeat(w))), ...rows.map(line)].join('\n');
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

// ---------------------------------------------------------------------------------------------
// How a run ended, locally and on AWS

export function describeRunResult(result: LocalRunResult): string {
  switch (result.status) {
    case 'SUCCEEDED':
      return 'Migration succeeded.\n';
    case 'FAILED':
      return `Migration failed (${result.error}):\n${result.cause}\n`;
    case 'ABORTED':
      return 'Migration stopped.\n';
    case 'TIMED_OUT':
      return 'Migration timed out.\n';
  }
}

const indentLines = (text: string, prefix: string) => text.split('\n').join(`\n${prefix}`);

/** An execution on AWS: its state, dates, error and cause, then the migration's status. */
export function formatRun(run: RunDescription): string {
  const where = run.lastState ? ` (${run.status === 'RUNNING' ? 'in' : 'last state'} ${run.lastState})` : '';
  const lines = [`Execution ${run.executionName}: ${run.status}${where}`];
  const dates = [run.startDate && `started ${isoSeconds(run.startDate)}`, run.stopDate && `stopped ${isoSeconds(run.stopDate)}`].filter(Boolean);
  if (dates.length) lines.push(`  ${dates.join(', ')}`);
  if (run.error) lines.push(`  error: ${run.error}`);
  if (run.cause) lines.push(`  cause: ${indentLines(run.cause, '         ')}`);
  const progress = run.progress;
  if (!progress.available) lines.push(`Progress unavailable: ${progress.reason}`);
  else if (progress.status) lines.push(formatStatus(progress.status));
  else lines.push(`Migration ${run.migrationName ?? '(unnamed)'} has not started on its target yet (no state in its control schema).`);
  return `${lines.join('\n')}\n`;
}

/** What a cleanup did, in words. */
export function cleanupDone(result: CleanupResult): string[] {
  return [
    result.slotDropped && 'dropped the replication slot',
    result.publicationDropped && 'dropped the publication',
    result.unfenced && 'lifted the write fence on the source',
  ].filter((done): done is string => Boolean(done));
}

// ---------------------------------------------------------------------------------------------
// A silent streamer (issue 12, D8): its last lag is not shown as if it were current

/** The streamer beats every second: silent this long, it is not streaming (an outage, a restart). */
export const SILENT_STREAMER_SECONDS = 10;

/** The CDC line while the streamer of a running migration is silent; undefined while it reports. */
export function silentStreamerLine(r: ReplicationStatusRow): string | undefined {
  if (r.drained || r.heartbeatAgeSeconds === null || r.heartbeatAgeSeconds < SILENT_STREAMER_SECONDS) return undefined;
  return (
    `CDC: no heartbeat from the streamer for ${Math.round(r.heartbeatAgeSeconds)} s (the source or the target may be unreachable; it retries)` +
    ` · at its last heartbeat: lag ${(r.lagSeconds ?? 0).toFixed(1)} s, ${number(r.rowsApplied)} rows applied (at ${r.appliedLsn ?? '-'})`
  );
}

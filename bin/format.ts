/**
 * Everything the CLI prints about a migration, as text for a terminal: precheck results, the
 * status and its replication line, the report, the live load's progress bars, how a local run
 * ended, an execution on AWS, and what a cleanup did. Pure functions of the data they are given.
 */
import type { AfterCutoverRow, FlowStatus, MigrationProgress, ReplicationStatusRow, RetainedWalRow } from '../engine/control/index.js';
import { describeFlow, describeLimits } from '../engine/flow/throttle.js';
import type { CleanupResult } from '../engine/steps/cleanup.js';
import type { CheckResult } from '../engine/precheck/index.js';
import type { MigrationReport } from '../engine/report.js';
import type { MigrationStatus } from '../engine/status.js';
import type { LocalRunResult } from '../local/runner/index.js';
import { isoSeconds } from '../platform/aws/names.js';
import type { RunDescription } from '../platform/aws/executions.js';
import { qualified } from '../engine/sql.js';
import { formatBytes } from '../engine/bytes.js';

export { formatBytes };

/** Where the CLI writes: stdout, stderr, or a test's capture of them. */
export type Out = Pick<NodeJS.WriteStream, 'write'>;

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
  const unavailable =
    r.cutoverRequested && r.writeUnavailableSeconds !== null
      ? ` · writes unavailable for ${r.writeUnavailableSeconds.toFixed(1)} s${r.targetReady ? '' : ' so far'}`
      : '';
  return `CDC: ${lag} · ${rate} · ${number(r.rowsApplied)} rows in ${number(r.transactionsApplied)} transactions applied (at ${r.appliedLsn ?? '-'})${drain}${unavailable}`;
}

/** The reverse stream after cutover: target → source. */
export function formatReverseLine(a: AfterCutoverRow): string {
  const r = a.reverse;
  const seen = r.seenSecondsAgo === null ? 'not seen yet' : `seen ${r.seenSecondsAgo.toFixed(0)} s ago`;
  const asked = a.fallbackRequested ? ' · fallback requested' : a.finishRequested ? ' · finish requested' : '';
  return (
    `Reverse (target → source): lag ${(r.lagSeconds ?? 0).toFixed(1)} s / ${formatBytes(r.lagBytes ?? 0)} · ${number(r.rowsApplied)} rows applied back (at ${r.appliedLsn ?? '-'}) · ${seen}${asked}` +
    `${r.error ? ` · error: ${r.error}` : ''}`
  );
}

export function formatStatus(status: MigrationStatus): string {
  const lines = [`Migration ${status.name}: ${status.phase}`];
  if (status.phase === 'paused') {
    lines.push(`  paused by: ${status.error ?? 'no cause recorded'}`);
    lines.push('  its replication slot and the data moved are kept: put the cause right, then pgferry resume SPEC; or abandon with pgferry stop SPEC --drop');
  } else if (status.error) lines.push(`  last error: ${status.error}`);
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
  const a = status.afterCutover;
  if (a?.reverseArmed && !a.outcome) lines.push(`  ${formatReverseLine(a)}`);
  if (a?.outcome === 'fallen-back') lines.push(`  fell back to the source: writes were unavailable for ${a.fallbackWindowSeconds?.toFixed(1) ?? '?'} s; the target is fenced`);
  if (a?.lastError) lines.push(`  after cutover: ${a.lastError}`);
  if (status.retainedWal) lines.push(...retainedWalLines(status.retainedWal).map((line) => `  ${line}`));
  if (status.flow) lines.push(`  ${flowLine(status.flow)}`);
  return lines.join('\n');
}

/** Flow control: the limits in force per phase, and each running worker's share. */
export function flowLine(flow: FlowStatus): string {
  const shares = (['load', 'cdc'] as const)
    .filter((kind) => flow[kind].workers > 0 && (flow[kind].limits.rowsPerSecond || flow[kind].limits.bytesPerSecond))
    .map((kind) => `${flow[kind].workers} ${kind === 'load' ? 'copy worker(s)' : 'applier'} at ${describeLimits(flow[kind].share)} each`);
  return `flow control: ${describeFlow(flow)}${shares.length ? ` · ${shares.join(', ')}` : ''}`;
}

const STALE_RETAINED_WAL_SECONDS = 120;

/**
 * The WAL the slot holds back on the source: bytes, the share of max_slot_wal_keep_size when
 * set, and a warning line past the threshold or when the slot is lost.
 */
export function retainedWalLines(w: RetainedWalRow): string[] {
  if (w.state === 'lost') {
    return [`✗ replication slot lost (${w.invalidationReason ?? 'invalidated'}): its changes are gone; a full reload is needed (run the migration again)`];
  }
  const share = w.keepSizeShare !== null ? ` (${Math.round(w.keepSizeShare * 100)}% of max_slot_wal_keep_size ${formatBytes(w.maxSlotWalKeepSizeBytes!)})` : '';
  const status = w.walStatus && w.walStatus !== 'reserved' ? ` · wal_status ${w.walStatus}` : '';
  // Measured about every 30 s: an older figure is shown as such (nothing measures it while the task is down).
  const stale = w.ageSeconds > STALE_RETAINED_WAL_SECONDS ? ` · measured ${Math.round(w.ageSeconds / 60)} min ago` : '';
  const line = `slot WAL: ${formatBytes(w.bytes ?? 0)} retained on the source${share}${status}${stale}`;
  if (w.state !== 'over') return [line];
  const limit = w.thresholdBytes !== null && (w.bytes ?? 0) > w.thresholdBytes ? `over cdc.maxRetainedWal (${formatBytes(w.thresholdBytes)})` : 'near max_slot_wal_keep_size';
  return [line, `! ${limit}: resume or cut over soon, raise max_slot_wal_keep_size, or abandon with "pgferry stop SPEC --drop"`];
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
  return [
    ...(loading ? progressLines(rows) : []),
    ...(replication ? [formatReplicationLine(replication)] : []),
    ...(progress?.retainedWal ? retainedWalLines(progress.retainedWal) : []),
  ];
}

// ---------------------------------------------------------------------------------------------
// The report

function table(headers: string[], rows: string[][], rightAligned: Set<number>): string {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (cells: string[]) =>
    cells.map((c, i) => (rightAligned.has(i) ? c.padStart(widths[i]!) : c.padEnd(widths[i]!))).join('  ').trimEnd();
  return [line(headers), line(widths.map((w) => '─'.repeat(w))), ...rows.map(line)].join('\n');
}

/** How many not migrated or skipped objects the terminal report names; the JSON report has them all. */
const MOST_NAMED = 50;

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
  const named = (list: MigrationReport['skipped']) => {
    const shown = list.slice(0, MOST_NAMED).map((o) => `  ${o.kind} ${o.identity}${o.detail ? `: ${o.detail}` : ''}`);
    return list.length > MOST_NAMED ? [...shown, `  … and ${list.length - MOST_NAMED} more (--report FILE lists every one)`] : shown;
  };
  if (report.notMigrated.length > 0) lines.push('', 'Not migrated:', ...named(report.notMigrated));
  if (report.skipped.length > 0) lines.push('', 'Skipped:', ...named(report.skipped));
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
        `${r.peakRetainedWalBytes !== undefined ? `; the slot held back at most ${formatBytes(r.peakRetainedWalBytes)} of WAL` : ''}` +
        `${r.drainSeconds !== null ? `; cutover drained in ${r.drainSeconds.toFixed(1)} s${r.fenced ? ' behind a write fence (the source stays fenced)' : ''}` : ''}` +
        `${r.writeUnavailableSeconds !== null ? `; writes were unavailable for ${r.writeUnavailableSeconds.toFixed(1)} s (${r.fenced ? 'fence' : 'drain point'} → target ready)` : ''}.`,
    );
  }
  const late = report.lateChanges ?? [];
  if (late.length > 0) {
    lines.push(
      `${late.reduce((sum, c) => sum + c.rows, 0)} row change(s) were committed on the source after the drain point, past the fence, and applied to the target:`,
      ...late.slice(0, MOST_NAMED).map((c) => `  ${c.schema}.${c.table} at ${c.commitLsn}: ${c.keys.join(', ')}${c.rows > c.keys.length ? ', …' : ''}`),
    );
  }
  const a = report.afterCutover;
  if (a?.reverseArmed) {
    lines.push(
      `Reverse replication armed at ${a.switchLsn ?? '-'}: ${a.reverseRowsApplied} row change(s) applied back to the source` +
        `${a.outcome === 'fallen-back' ? `; fell back, writes were unavailable for ${a.fallbackWriteUnavailableSeconds?.toFixed(1) ?? '?'} s (target fence → source ready)` : ''}` +
        `${a.outcome === 'finished' ? '; finished' : ''}.`,
    );
  }
  if (report.checklist.length > 0) lines.push('', 'After cutover:', ...report.checklist.map((item) => `  □ ${item}`));
  return lines.join('\n');
}

// ---------------------------------------------------------------------------------------------
// How a run ended, locally and on AWS

export function describeRunResult(result: LocalRunResult): string {
  switch (result.status) {
    case 'SUCCEEDED':
      return (result.output as { paused?: { action?: string; cause?: string } } | undefined)?.paused?.action === 'handed-over'
        ? `${(result.output as { paused: { cause: string } }).paused.cause}\n`
        : 'Migration succeeded.\n';
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
/** What a stop did to the run, and what continues or ends it; `handle` is how the person names it again (SPEC, or the execution's ARN). */
export function describeCleanup(name: string, result: CleanupResult, handle: string): string {
  const done = cleanupDone(result);
  const what = done.length ? `; ${done.join(', ')}` : '';
  return result.paused
    ? `Migration ${name} is paused${what}. Its replication slot, publication and target data are kept: ` +
        `continue it with pgferry resume ${handle}, or abandon it with pgferry stop ${handle} --drop.`
    : `Migration ${name} is marked failed${what}. It can run again.`;
}

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

/**
 * The migration report, read from the control schema: schema objects per kind (and what was
 * not migrated), per-table rows, bytes, time, throughput and comparison result. The same JSON
 * feeds `pgferry run --report FILE`, the printed tables, and the status views.
 */
import type pg from 'pg';
import {
  leftOutObjects,
  type LeftOutObject,
  readProgress,
  schemaObjectCounts,
  type AfterCutoverRow,
  type LateChange,
  readLateChanges,
  renamedObjects,
  type MigrationProgress,
  type ReplicationStatusRow,
  type RetainedWalRow,
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
  /** The execution that ran it: a report is only ever shown for the run that wrote it. */
  execution: string | null;
  mode: string;
  phase: string;
  error: string | null;
  startedAt: string;
  finishedAt: string | null;
  seconds: number;
  objects: ObjectKindReport[];
  /** Objects of a kind pgferry does not create, each with the reason. */
  notMigrated: { kind: string; identity: string; detail: string | null }[];
  /** Objects left out by the selection, a sync flag or a dependency, each with the reason. */
  skipped: { kind: string; identity: string; detail: string | null }[];
  tables: TableReport[];
  totals: { tables: number; rows: number; bytes: number; loadSeconds: number; mbPerSecond: number };
  /** CDC modes: what was streamed and applied, and how cutover went. */
  replication?: ReplicationReport;
  /** After cutover: the reverse stream and how it ended (fallback or finish). */
  afterCutover?: AfterCutoverReport;
  /** Row changes committed on the source after the cutover's drain point (past the fence): applied, and listed here. */
  lateChanges?: LateChange[];
  /** After cutover: what is left for a person to do or know, each item with the command that does it. */
  checklist: string[];
  /** What name mapping renamed (spec `mapping`): each object's source identity and target identity. */
  renamed?: { kind: string; from: string; to: string }[];
}

export interface AfterCutoverReport {
  reverseArmed: boolean;
  switchLsn: string | null;
  /** Changes made on the target and applied back to the source. */
  reverseRowsApplied: number;
  applicationSwitchedTo: string | null;
  outcome: 'fallen-back' | 'finished' | null;
  /** Seconds from the target's fence until the source took writes again. */
  fallbackWriteUnavailableSeconds: number | null;
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
  /** Seconds applications could not write: from the fence (or, without one, the drain point) until the target was ready; null until it is. */
  writeUnavailableSeconds: number | null;
  /** The most WAL the slot held back on the source, as measured (absent: never measured). */
  peakRetainedWalBytes?: number;
}

const MB = 1024 * 1024;
const rate = (bytes: number, seconds: number) => (seconds > 0 ? Math.round((bytes / MB / seconds) * 10) / 10 : 0);

/** Builds the report of a migration; undefined when the target has no record of it. */
export async function buildReport(target: pg.Client, migration: string): Promise<MigrationReport | undefined> {
  const progress = await readProgress(target, migration);
  if (!progress) return undefined;
  const report = reportOf(progress, await schemaObjectCounts(target, migration), await leftOutObjects(target, migration));
  const lateChanges = await readLateChanges(target, migration);
  const renamed = (await renamedObjects(target, migration)).map((r) => ({ kind: r.kind, from: r.sourceIdentity, to: r.targetIdentity }));
  return { ...report, ...(lateChanges.length ? { lateChanges } : {}), ...(renamed.length ? { renamed } : {}) };
}

const hundredths = (value: number) => Math.round(value * 100) / 100;

/** The report of a migration's progress and its schema objects. */
export function reportOf(
  progress: MigrationProgress,
  objects: ObjectKindReport[],
  leftOut: LeftOutObject[],
): MigrationReport {
  const listed = (status: LeftOutObject['status']) =>
    leftOut.filter((o) => o.status === status).map(({ kind, identity, detail }) => ({ kind, identity, detail }));
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
    execution: run.execution,
    mode: run.mode,
    phase: run.phase,
    error: run.error,
    startedAt: run.startedAt.toISOString(),
    finishedAt: run.finishedAt?.toISOString() ?? null,
    seconds: hundredths(run.seconds),
    objects,
    notMigrated: listed('not_migrated'),
    skipped: listed('skipped'),
    tables,
    totals: { tables: tables.length, rows, bytes, loadSeconds, mbPerSecond: rate(bytes, loadSeconds) },
    ...(progress.replication ? { replication: replicationReport(progress.replication, progress.retainedWal) } : {}),
    ...(progress.afterCutover ? { afterCutover: afterCutoverReport(progress.afterCutover) } : {}),
    checklist: afterCutoverChecklist(progress, objects),
  };
}

function afterCutoverReport(after: AfterCutoverRow): AfterCutoverReport {
  return {
    reverseArmed: after.reverseArmed,
    switchLsn: after.switchLsn,
    reverseRowsApplied: after.reverse.rowsApplied,
    applicationSwitchedTo: after.applicationSwitchedTo,
    outcome: after.outcome,
    fallbackWriteUnavailableSeconds: after.outcome === 'fallen-back' && after.fallbackWindowSeconds !== null ? hundredths(after.fallbackWindowSeconds) : null,
  };
}

/** The post-cutover checklist: fences, sequences, ownership, the control schema and the reverse stream. Empty before a cutover. */
export function afterCutoverChecklist(progress: MigrationProgress, objects: ObjectKindReport[]): string[] {
  const replication = progress.replication;
  const after = progress.afterCutover;
  if (!replication?.targetReady) return [];
  const items: string[] = [];
  const finished = after?.outcome === 'finished';
  const fellBack = after?.outcome === 'fallen-back';
  if (fellBack) {
    items.push(`Fell back: the source takes writes again; the target is fenced (writes refused by the pgferry_fence trigger and default_transaction_read_only). pgferry finish SPEC lifts that fence.`);
  } else if (replication.fenced && !finished) {
    items.push(
      `The source is fenced: writes to the migrated tables are refused (pgferry_fence trigger, default_transaction_read_only, other sessions ended). ` +
        `${after?.reverseArmed ? 'pgferry fallback SPEC returns to it; ' : ''}pgferry finish SPEC lifts the fence once you no longer need the source.`,
    );
  }
  const sequences = objects.find((o) => o.kind === 'sequence value');
  items.push(
    sequences
      ? `Sequences: ${Object.values(sequences.counts).reduce((a, b) => a + b, 0)} set from the source at cutover${fellBack ? ', and set back on the source at fallback' : ''}; identity and serial columns continue from the source's values.`
      : 'Sequences: none were set at cutover (cutover.syncSequences or schema.sync.sequences is off, or there are none): set them with setval before the application inserts.',
  );
  items.push(
    'Ownership and privileges: check that the application role can use the target tables (the report\'s objects list owners and grants that were migrated; schema.sync.roles creates missing roles).',
  );
  if (after?.reverseArmed && !finished && !fellBack) {
    items.push(
      `Reverse stream: writes on the target flow back to the source (${after.reverse.rowsApplied} row change(s) so far); its slot on the target holds WAL until pgferry finish SPEC ends it, or pgferry fallback SPEC returns to the source.`,
    );
  }
  if (after?.applicationSwitchedTo) items.push(`Application: its secret points at the ${after.applicationSwitchedTo} (cutover.switch).`);
  else items.push(`Application: point it at the ${fellBack ? 'source' : 'target'} (cutover.switch can rewrite the secret it reads).`);
  items.push(`Control schema: pgferry keeps its state in the pgferry schema${after?.reverseArmed ? ' on both sides' : ' on the target'}; pgferry finish SPEC --drop-control removes it.`);
  return items;
}

function replicationReport(status: ReplicationStatusRow, retainedWal: RetainedWalRow | undefined): ReplicationReport {
  return {
    slot: status.slotName,
    consistentLsn: status.consistentLsn,
    appliedLsn: status.appliedLsn,
    transactions: status.transactionsApplied,
    rows: status.rowsApplied,
    restarts: status.restarts,
    fenced: status.fenced,
    drainSeconds: status.drainSeconds === null ? null : hundredths(status.drainSeconds),
    writeUnavailableSeconds: status.targetReady && status.writeUnavailableSeconds !== null ? hundredths(status.writeUnavailableSeconds) : null,
    ...(retainedWal?.peakBytes != null ? { peakRetainedWalBytes: retainedWal.peakBytes } : {}),
  };
}

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
  /** Seconds applications could not write: from the fence (or the cutover request) until the target was ready; null until it is. */
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
  return reportOf(progress, await schemaObjectCounts(target, migration), await leftOutObjects(target, migration));
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
  };
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

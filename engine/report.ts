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

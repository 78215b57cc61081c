/**
 * Statements on the control schema that the workflow's steps (engine/steps/) run and that no
 * other module of engine/control/ had yet: the load's outcome, its plan as the comparison and
 * the copy workers read it, and whether the load still needs its snapshot.
 */
import type pg from 'pg';
import type { TableRef } from '../catalog/tables.js';

/** A work unit that is not done (pending or failed), with why. */
export interface UnfinishedUnit {
  id: number;
  source: TableRef;
  state: string;
  attempts: number;
  lastError: string | null;
}

/** The migration's work units that are not done, by id. */
export async function unfinishedUnits(client: pg.Client, migration: string): Promise<UnfinishedUnit[]> {
  const { rows } = await client.query(
    `SELECT u.id, u.source_schema, u.source_table, u.state, p.attempts, u.last_error
       FROM pgferry.units u JOIN pgferry.unit_progress p USING (migration, id)
      WHERE u.migration = $1 AND u.state <> 'done' ORDER BY u.id`,
    [migration],
  );
  return rows.map((u) => ({
    id: u.id,
    source: { schema: u.source_schema, name: u.source_table },
    state: u.state,
    attempts: u.attempts,
    lastError: u.last_error,
  }));
}

export interface LoadTotals {
  units: number;
  rows: number;
  bytes: number;
}

/** How many units the load planned, and the rows and bytes they copied. */
export async function loadTotals(client: pg.Client, migration: string): Promise<LoadTotals> {
  const { rows } = await client.query<LoadTotals>(
    `SELECT count(*)::int AS units, coalesce(sum(rows_copied), 0)::float8 AS rows, coalesce(sum(bytes_copied), 0)::float8 AS bytes
       FROM pgferry.units WHERE migration = $1`,
    [migration],
  );
  return rows[0]!;
}

/** How many work units the load planned (PlanFullLoad runs min(parallelism, this) copy workers). */
export async function plannedUnitCount(client: pg.Client, migration: string): Promise<number> {
  const { rows } = await client.query<{ units: number }>('SELECT count(*)::int AS units FROM pgferry.units WHERE migration = $1', [migration]);
  return rows[0]!.units;
}

/** A table the load planned, as its units name it: source, target, the copied columns and the row filter. */
export interface PlannedTable {
  source: TableRef;
  target: TableRef;
  columns: string[];
  where: string | null;
}

/** Every table the load planned, once each, by source name. */
export async function plannedTables(client: pg.Client, migration: string): Promise<PlannedTable[]> {
  const { rows } = await client.query(
    `SELECT DISTINCT ON (source_schema, source_table) source_schema, source_table, target_schema, target_table, columns, where_clause
       FROM pgferry.units WHERE migration = $1 ORDER BY source_schema, source_table`,
    [migration],
  );
  return rows.map((row) => ({
    source: { schema: row.source_schema, name: row.source_table },
    target: { schema: row.target_schema, name: row.target_table },
    columns: row.columns,
    where: row.where_clause,
  }));
}

/**
 * Whether the full load may still import the slot's snapshot: the schema is being created, or
 * the load has no plan yet, or a unit is not done (a failed unit is redone on the snapshot).
 * False once the migration is gone.
 */
export async function loadNeedsSnapshot(client: pg.Client, migration: string): Promise<boolean> {
  const { rows } = await client.query<{ waiting: boolean }>(
    `SELECT m.phase = 'schema' OR m.phase = 'load' AND (NOT EXISTS (SELECT 1 FROM pgferry.units u WHERE u.migration = m.name)
              OR EXISTS (SELECT 1 FROM pgferry.units u WHERE u.migration = m.name AND u.state <> 'done')) AS waiting
       FROM pgferry.migrations m WHERE m.name = $1`,
    [migration],
  );
  return Boolean(rows[0]?.waiting);
}

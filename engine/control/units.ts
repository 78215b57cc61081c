/**
 * The full load's rows: `pgferry.tables` (the planned tables), `pgferry.units` (the work units,
 * claimed by a row lock in the copying worker's target transaction), `pgferry.unit_progress`
 * (attempts and bytes so far, written from another session because the unit row stays locked
 * while it copies) and `pgferry.index_jobs` (index builds a worker runs once a table is in).
 */
import type pg from 'pg';
import type { TableRef } from '../catalog/tables.js';
import { withTransaction } from '../sql.js';
import { controlTableExists } from './schema.js';

/** A unit of the full load: one table, or one ctid page range of a large one. */
export interface WorkUnit {
  id: number;
  source: TableRef;
  target: TableRef;
  columns: string[];
  where?: string;
  /** Page range `[fromPage, toPage)`; toPage absent means to the end of the table. */
  fromPage?: number;
  toPage?: number;
  binaryFormat: boolean;
  /** The unit owns the whole table: it may TRUNCATE it and COPY … FREEZE in its transaction. */
  freeze: boolean;
  estimatedBytes: number;
}

/** A table of the plan, with the number of units it was split into. */
export interface PlannedTable {
  source: TableRef;
  target: TableRef;
  estimatedRows: number;
  estimatedBytes: number;
  units: number;
}

/** Stores the plan, replacing an earlier one of the migration. */
export async function replacePlan(client: pg.Client, migration: string, tables: PlannedTable[], units: WorkUnit[]): Promise<void> {
  await withTransaction(client, async () => {
    await client.query('DELETE FROM pgferry.units WHERE migration = $1', [migration]);
    await client.query('DELETE FROM pgferry.tables WHERE migration = $1', [migration]);
    for (const table of tables) {
      await client.query(
        `INSERT INTO pgferry.tables (migration, source_schema, source_table, target_schema, target_table, estimated_rows, estimated_bytes, units_total)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`,
        [migration, table.source.schema, table.source.name, table.target.schema, table.target.name, table.estimatedRows, table.estimatedBytes, table.units],
      );
    }
    for (const unit of units) {
      await client.query(
        `INSERT INTO pgferry.units (migration, id, source_schema, source_table, target_schema, target_table, columns, where_clause,
                                    from_page, to_page, binary_format, owns_table, estimated_bytes)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)`,
        [
          migration,
          unit.id,
          unit.source.schema,
          unit.source.name,
          unit.target.schema,
          unit.target.name,
          unit.columns,
          unit.where ?? null,
          unit.fromPage ?? null,
          unit.toPage ?? null,
          unit.binaryFormat,
          unit.freeze,
          unit.estimatedBytes,
        ],
      );
      await client.query('INSERT INTO pgferry.unit_progress (migration, id) VALUES ($1, $2)', [migration, unit.id]);
    }
  });
}

const CLAIM_SQL = `
SELECT u.id, u.source_schema, u.source_table, u.target_schema, u.target_table, u.columns, u.where_clause, u.from_page,
       u.to_page, u.binary_format, u.owns_table, u.estimated_bytes, p.attempts
  FROM pgferry.units u JOIN pgferry.unit_progress p USING (migration, id)
 WHERE u.migration = $1 AND u.state = 'pending'
 ORDER BY u.estimated_bytes DESC, u.id
 LIMIT 1
   FOR UPDATE OF u SKIP LOCKED`;

/**
 * Locks the biggest pending unit no other worker holds, for the rest of the caller's open
 * transaction (which copies it and marks it done); undefined when none is left.
 */
export async function claimUnit(client: pg.Client, migration: string): Promise<{ unit: WorkUnit; attempts: number } | undefined> {
  const { rows } = await client.query(CLAIM_SQL, [migration]);
  const row = rows[0];
  if (!row) return undefined;
  const unit: WorkUnit = {
    id: row.id,
    source: { schema: row.source_schema, name: row.source_table },
    target: { schema: row.target_schema, name: row.target_table },
    columns: row.columns,
    ...(row.where_clause === null ? {} : { where: row.where_clause }),
    ...(row.from_page === null ? {} : { fromPage: Number(row.from_page) }),
    ...(row.to_page === null ? {} : { toPage: Number(row.to_page) }),
    binaryFormat: row.binary_format,
    freeze: row.owns_table,
    estimatedBytes: Number(row.estimated_bytes),
  };
  return { unit, attempts: row.attempts };
}

/** Counts an attempt at a unit and restarts its progress (on the control session: the unit row is locked). */
export async function startUnitAttempt(control: pg.Client, migration: string, id: number, attempt: number): Promise<void> {
  await control.query(
    `UPDATE pgferry.unit_progress SET attempts = $3, started_at = coalesce(started_at, clock_timestamp()), attempt_started_at = clock_timestamp(),
            rows_copied = 0, bytes_copied = 0
      WHERE migration = $1 AND id = $2`,
    [migration, id, attempt],
  );
}

/** Marks a unit done, in the transaction that claimed and copied it. */
export async function markUnitDone(client: pg.Client, migration: string, id: number, copied: { rows: number; bytes: number }): Promise<void> {
  await client.query(
    `UPDATE pgferry.units SET state = 'done', rows_copied = $3, bytes_copied = $4, finished_at = clock_timestamp(), last_error = NULL
      WHERE migration = $1 AND id = $2`,
    [migration, id, copied.rows, copied.bytes],
  );
}

/** The bytes a unit has copied so far, while it copies. */
export async function reportUnitBytes(control: pg.Client, migration: string, id: number, bytes: number): Promise<void> {
  await control.query('UPDATE pgferry.unit_progress SET bytes_copied = $3 WHERE migration = $1 AND id = $2', [migration, id, bytes]);
}

/** What a committed unit copied, beside it in its progress row. */
export async function recordUnitCopied(control: pg.Client, migration: string, id: number, copied: { rows: number; bytes: number }): Promise<void> {
  await control.query('UPDATE pgferry.unit_progress SET rows_copied = $3, bytes_copied = $4 WHERE migration = $1 AND id = $2', [
    migration,
    id,
    copied.rows,
    copied.bytes,
  ]);
}

/** Records why an attempt failed; `giveUp` marks the unit failed, otherwise it stays pending. */
export async function recordUnitFailure(control: pg.Client, migration: string, id: number, message: string, giveUp: boolean): Promise<void> {
  await control.query(
    `UPDATE pgferry.units SET last_error = $3, state = CASE WHEN $4 THEN 'failed' ELSE state END WHERE migration = $1 AND id = $2`,
    [migration, id, message, giveUp],
  );
}

/** The units not done, with their attempts and last error: what a load that did not finish left. */
/** A work unit that is not done (pending or failed), with why. */
export interface UnfinishedUnit {
  id: number;
  source: TableRef;
  state: string;
  attempts: number;
  lastError: string | null;
}

export async function unfinishedUnits(client: pg.Client, migration: string): Promise<UnfinishedUnit[]> {
  const { rows } = await client.query(
    `SELECT u.id, u.source_schema, u.source_table, u.state, p.attempts, u.last_error
       FROM pgferry.units u JOIN pgferry.unit_progress p USING (migration, id)
      WHERE u.migration = $1 AND u.state <> 'done' ORDER BY u.id`,
    [migration],
  );
  return rows.map((r) => ({
    id: r.id,
    source: { schema: r.source_schema, name: r.source_table },
    state: r.state,
    attempts: r.attempts,
    lastError: r.last_error,
  }));
}

/** What all the units of the load copied. */
export async function loadTotals(client: pg.Client, migration: string): Promise<{ units: number; rows: number; bytes: number }> {
  const { rows } = await client.query<{ units: number; rows: number; bytes: number }>(
    `SELECT count(*)::int AS units, coalesce(sum(rows_copied), 0)::float8 AS rows, coalesce(sum(bytes_copied), 0)::float8 AS bytes
       FROM pgferry.units WHERE migration = $1`,
    [migration],
  );
  return rows[0]!;
}

/** Each loaded table once, by source schema and name: where its rows went, which columns, with which filter. */
export async function loadedTables(
  client: pg.Client,
  migration: string,
): Promise<{ source: TableRef; target: TableRef; columns: string[]; where?: string }[]> {
  const { rows } = await client.query(
    `SELECT DISTINCT ON (source_schema, source_table) source_schema, source_table, target_schema, target_table, columns, where_clause
       FROM pgferry.units WHERE migration = $1 ORDER BY source_schema, source_table`,
    [migration],
  );
  return rows.map((r) => ({
    source: { schema: r.source_schema, name: r.source_table },
    target: { schema: r.target_schema, name: r.target_table },
    columns: r.columns,
    ...(r.where_clause === null ? {} : { where: r.where_clause }),
  }));
}

/**
 * Whether the full load may still need its snapshot: the migration is before or in the load
 * with no plan yet, or with units not done (a failed unit is redone on the same snapshot).
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

/** A planned table's load as it stands. */
export interface TableProgress {
  source: TableRef;
  target: TableRef;
  estimatedBytes: number;
  units: number;
  unitsDone: number;
  /** A pending unit of it has an attempt under way. */
  copying: boolean;
  /** Rows and bytes of the units done. */
  rows: number;
  bytes: number;
  /** Bytes copied so far, the units under way included. */
  bytesSoFar: number;
  /** From the first unit's start until the last unit done finished. */
  seconds: number;
}

export async function tableProgress(client: pg.Client, migration: string): Promise<TableProgress[]> {
  const { rows } = await client.query(
    `SELECT t.source_schema, t.source_table, t.target_schema, t.target_table, t.estimated_bytes::float8 AS estimated_bytes,
            count(u.id)::int AS units, count(u.id) FILTER (WHERE u.state = 'done')::int AS units_done,
            coalesce(bool_or(u.state = 'pending' AND p.attempt_started_at IS NOT NULL), false) AS copying,
            coalesce(sum(u.rows_copied), 0)::float8 AS rows, coalesce(sum(u.bytes_copied), 0)::float8 AS bytes,
            coalesce(sum(p.bytes_copied), 0)::float8 AS bytes_so_far,
            coalesce(extract(epoch FROM max(u.finished_at) - min(p.started_at)), 0)::float8 AS seconds
       FROM pgferry.tables t
       LEFT JOIN pgferry.units u ON (u.migration, u.source_schema, u.source_table) = (t.migration, t.source_schema, t.source_table)
       LEFT JOIN pgferry.unit_progress p ON (p.migration, p.id) = (u.migration, u.id)
      WHERE t.migration = $1
      GROUP BY t.source_schema, t.source_table, t.target_schema, t.target_table, t.estimated_bytes
      ORDER BY t.source_schema, t.source_table`,
    [migration],
  );
  return rows.map((row) => ({
    source: { schema: row.source_schema, name: row.source_table },
    target: { schema: row.target_schema, name: row.target_table },
    estimatedBytes: row.estimated_bytes,
    units: row.units,
    unitsDone: row.units_done,
    copying: row.copying,
    rows: row.rows,
    bytes: row.bytes,
    bytesSoFar: row.bytes_so_far,
    seconds: row.seconds,
  }));
}

/** Seconds from the first unit's start until the last unit done finished, over all tables. */
export async function loadSeconds(client: pg.Client, migration: string): Promise<number> {
  const { rows } = await client.query<{ seconds: number }>(
    `SELECT coalesce(extract(epoch FROM max(u.finished_at) - min(p.started_at)), 0)::float8 AS seconds
       FROM pgferry.units u JOIN pgferry.unit_progress p USING (migration, id) WHERE u.migration = $1`,
    [migration],
  );
  return rows[0]!.seconds;
}

/** An index build or single-table constraint to run once its table's rows are in (schema's TableJob fits). */
export interface IndexJobInput {
  table: TableRef;
  kind: string;
  identity: string;
  sql: string[];
}

export async function saveIndexJobs(client: pg.Client, migration: string, jobs: IndexJobInput[]): Promise<void> {
  await client.query('DELETE FROM pgferry.index_jobs WHERE migration = $1', [migration]);
  if (jobs.length === 0) return;
  await client.query(
    `INSERT INTO pgferry.index_jobs (migration, id, table_schema, table_name, kind, identity, statements)
     SELECT $1, ord, s, n, k, i, string_to_array(q, E'\\x1f')
       FROM unnest($2::text[], $3::text[], $4::text[], $5::text[], $6::text[]) WITH ORDINALITY AS j(s, n, k, i, q, ord)`,
    [
      migration,
      jobs.map((j) => j.table.schema),
      jobs.map((j) => j.table.name),
      jobs.map((j) => j.kind),
      jobs.map((j) => j.identity),
      jobs.map((j) => j.sql.join('\x1f')),
    ],
  );
}

/** Every unit of `table` is done and it has index jobs pending. */
export async function indexJobsReady(client: pg.Client, migration: string, table: TableRef): Promise<boolean> {
  const { rows } = await client.query(
    `SELECT NOT EXISTS (SELECT 1 FROM pgferry.units WHERE migration = $1 AND source_schema = $2 AND source_table = $3 AND state <> 'done')
            AND EXISTS (SELECT 1 FROM pgferry.index_jobs WHERE migration = $1 AND table_schema = $2 AND table_name = $3 AND state = 'pending') AS ready`,
    [migration, table.schema, table.name],
  );
  return Boolean(rows[0]?.ready);
}

/**
 * Locks the next pending job of `table` for the caller's open transaction (statistics only
 * once the table's other jobs are built); undefined when none is left.
 */
export async function claimIndexJob(client: pg.Client, migration: string, table: TableRef): Promise<{ id: number; statements: string[] } | undefined> {
  const { rows } = await client.query<{ id: number; statements: string[] }>(
    `SELECT id, statements FROM pgferry.index_jobs j
      WHERE migration = $1 AND table_schema = $2 AND table_name = $3 AND state = 'pending'
        AND (kind <> 'analyze' OR NOT EXISTS (
              SELECT 1 FROM pgferry.index_jobs o
               WHERE (o.migration, o.table_schema, o.table_name) = (j.migration, j.table_schema, j.table_name)
                 AND o.kind <> 'analyze' AND o.state = 'pending'))
      ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED`,
    [migration, table.schema, table.name],
  );
  return rows[0];
}

export async function markIndexJobDone(client: pg.Client, migration: string, id: number): Promise<void> {
  await client.query(`UPDATE pgferry.index_jobs SET state = 'done' WHERE migration = $1 AND id = $2`, [migration, id]);
}

/** A job that did not build: `existing` when its object was already there, otherwise `failed`. */
export async function recordIndexJobFailure(client: pg.Client, migration: string, id: number, state: 'existing' | 'failed', error: string): Promise<void> {
  await client.query('UPDATE pgferry.index_jobs SET state = $3, error = $4 WHERE migration = $1 AND id = $2', [migration, id, state, error]);
}

/** Each index job's state, keyed `<kind> <identity>` (empty when the control schema predates index jobs). */
export async function indexJobStates(client: pg.Client, migration: string): Promise<Map<string, string>> {
  if (!(await controlTableExists(client, 'index_jobs'))) return new Map();
  const { rows } = await client.query('SELECT kind, identity, state FROM pgferry.index_jobs WHERE migration = $1', [migration]);
  return new Map(rows.map((r) => [`${r.kind} ${r.identity}`, r.state as string]));
}

/** A resumed load tries the units that gave up again; the units done stay done. */
export async function retryFailedUnits(client: pg.Client, migration: string): Promise<number> {
  const { rowCount } = await client.query("UPDATE pgferry.units SET state = 'pending', last_error = NULL WHERE migration = $1 AND state = 'failed'", [migration]);
  return rowCount ?? 0;
}

/** A table copied again whole by table sync (a resumed load): its units are done, the rows the sync copied counted once. */
export async function markTableResynced(client: pg.ClientBase, migration: string, table: TableRef): Promise<void> {
  await client.query(
    `UPDATE pgferry.units u SET state = 'done', last_error = NULL, finished_at = now(), bytes_copied = 0,
            rows_copied = CASE WHEN u.id = (SELECT min(id) FROM pgferry.units WHERE migration = $1 AND source_schema = $2 AND source_table = $3)
                               THEN s.rows_copied ELSE 0 END
       FROM pgferry.table_sync s
      WHERE u.migration = $1 AND u.source_schema = $2 AND u.source_table = $3
        AND s.migration = u.migration AND s.source_schema = u.source_schema AND s.source_table = u.source_table`,
    [migration, table.schema, table.name],
  );
}

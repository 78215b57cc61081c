/** `pgferry.comparisons`: each table's latest comparison of source and target. */
import type pg from 'pg';
import type { TableRef } from '../catalog/tables.js';

export interface RowDifference {
  /** Primary key values in PostgreSQL text form. */
  key: Record<string, string | null>;
  /** missing: on the source, not on the target; extra: on the target only; different: on both with other values. */
  kind: 'missing' | 'extra' | 'different';
}

/** A table's comparison (engine/compare produces it). */
export interface TableComparison {
  source: TableRef;
  method: 'checksum' | 'count';
  status: 'match' | 'mismatch';
  sourceRows: number;
  targetRows: number;
  ranges: number;
  mismatchedRanges: number;
  differences: RowDifference[];
  note?: string;
}

/** Records a table's comparison in the control schema, replacing an earlier one of the same migration. */
export async function saveComparison(target: pg.Client, migration: string, result: TableComparison): Promise<void> {
  await target.query(
    `INSERT INTO pgferry.comparisons
       (migration, source_schema, source_table, method, status, source_rows, target_rows, ranges, mismatched_ranges, differences, note)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10::jsonb, $11)
     ON CONFLICT (migration, source_schema, source_table) DO UPDATE SET
       method = EXCLUDED.method, status = EXCLUDED.status, source_rows = EXCLUDED.source_rows,
       target_rows = EXCLUDED.target_rows, ranges = EXCLUDED.ranges, mismatched_ranges = EXCLUDED.mismatched_ranges,
       differences = EXCLUDED.differences, note = EXCLUDED.note, compared_at = now()`,
    [
      migration,
      result.source.schema,
      result.source.name,
      result.method,
      result.status,
      result.sourceRows,
      result.targetRows,
      result.ranges,
      result.mismatchedRanges,
      JSON.stringify(result.differences),
      result.note ?? null,
    ],
  );
}

/** The comparisons saved for a migration, as `saveComparison` wrote them. */
export async function loadComparisons(target: pg.Client, migration: string): Promise<TableComparison[]> {
  const { rows } = await target.query(
    `SELECT source_schema, source_table, method, status, source_rows, target_rows, ranges, mismatched_ranges, differences, note
       FROM pgferry.comparisons WHERE migration = $1 ORDER BY source_schema, source_table`,
    [migration],
  );
  return rows.map((r) => ({
    source: { schema: r.source_schema, name: r.source_table },
    method: r.method,
    status: r.status,
    sourceRows: Number(r.source_rows),
    targetRows: Number(r.target_rows),
    ranges: r.ranges,
    mismatchedRanges: r.mismatched_ranges,
    differences: r.differences,
    ...(r.note ? { note: r.note } : {}),
  }));
}

/** A comparison's outcome without its rows, for the progress views. */
export interface ComparisonSummary {
  source: TableRef;
  status: TableComparison['status'];
  differences: number;
}

export async function comparisonSummaries(target: pg.Client, migration: string): Promise<ComparisonSummary[]> {
  const { rows } = await target.query(
    `SELECT source_schema, source_table, status, jsonb_array_length(differences) AS differences
       FROM pgferry.comparisons WHERE migration = $1 ORDER BY source_schema, source_table`,
    [migration],
  );
  return rows.map((r) => ({ source: { schema: r.source_schema, name: r.source_table }, status: r.status, differences: r.differences }));
}

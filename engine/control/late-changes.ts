/**
 * `pgferry.late_changes`: row changes committed on the source after the cutover's drain point,
 * which the fence should have refused (a replica-role session, a transaction open across the
 * fence). The stream applied them; they are listed here so the report can name them.
 */
import type pg from 'pg';
import { controlTableExists } from './schema.js';

export interface LateChange {
  /** Commit LSN of the source transaction. */
  commitLsn: string;
  schema: string;
  table: string;
  /** Row changes of the transaction on the table (a TRUNCATE counts one). */
  rows: number;
  /** The first few changes, as `insert id=5`, `update id=7`, `delete id=9`, `truncate`. */
  keys: string[];
}

/** Records late changes (again: a change recorded before is kept as it is); how many were new. */
export async function recordLateChanges(control: pg.ClientBase, migration: string, changes: LateChange[]): Promise<number> {
  if (changes.length === 0) return 0;
  const { rowCount } = await control.query(
    `INSERT INTO pgferry.late_changes (migration, commit_lsn, source_schema, source_table, rows, keys)
     SELECT $1, c.lsn::pg_lsn, c.schema, c.name, c.rows, ARRAY(SELECT jsonb_array_elements_text(c.keys))
       FROM unnest($2::text[], $3::text[], $4::text[], $5::bigint[], $6::jsonb[]) AS c(lsn, schema, name, rows, keys)
     ON CONFLICT (migration, commit_lsn, source_schema, source_table) DO NOTHING`,
    [
      migration,
      changes.map((c) => c.commitLsn),
      changes.map((c) => c.schema),
      changes.map((c) => c.table),
      changes.map((c) => c.rows),
      changes.map((c) => JSON.stringify(c.keys)),
    ],
  );
  return rowCount ?? 0;
}

/** The migration's late changes in commit order (none when the control schema predates them). */
export async function readLateChanges(client: pg.ClientBase, migration: string): Promise<LateChange[]> {
  if (!(await controlTableExists(client, 'late_changes'))) return [];
  const { rows } = await client.query<{ lsn: string; schema: string; name: string; rows: string; keys: string[] }>(
    `SELECT commit_lsn::text AS lsn, source_schema AS schema, source_table AS name, rows::text, keys
       FROM pgferry.late_changes WHERE migration = $1 ORDER BY commit_lsn, source_schema, source_table`,
    [migration],
  );
  return rows.map((r) => ({ commitLsn: r.lsn, schema: r.schema, table: r.name, rows: Number(r.rows), keys: r.keys }));
}

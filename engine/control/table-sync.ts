/** `pgferry.table_sync`: from which LSN the stream applies the changes of a table copied at a snapshot of its own. */
import type pg from 'pg';
import type { TableRef } from '../catalog/tables.js';
import { forgetVerification } from './changed-keys.js';

export async function recordTableSync(client: pg.ClientBase, migration: string, table: TableRef, startLsn: string, rows: number): Promise<void> {
  await client.query(
    `INSERT INTO pgferry.table_sync (migration, source_schema, source_table, start_lsn, rows_copied) VALUES ($1, $2, $3, $4::pg_lsn, $5)
     ON CONFLICT (migration, source_schema, source_table) DO UPDATE SET start_lsn = excluded.start_lsn, rows_copied = excluded.rows_copied, synced_at = now()`,
    [migration, table.schema, table.name, startLsn, rows],
  );
  // Copied anew: what the comparison while replicating verified of it no longer holds.
  await forgetVerification(client, migration, table);
}

/** Start LSNs by `schema.table`, only those after `after` (earlier ones no longer filter anything). */
export async function readTableSyncs(client: pg.ClientBase, migration: string, after = '0/0'): Promise<Map<string, string>> {
  const { rows } = await client.query<{ schema: string; name: string; lsn: string }>(
    `SELECT source_schema AS schema, source_table AS name, start_lsn::text AS lsn FROM pgferry.table_sync
      WHERE migration = $1 AND start_lsn > $2::pg_lsn`,
    [migration, after],
  );
  return new Map(rows.map((r) => [`${r.schema}.${r.name}`, r.lsn]));
}

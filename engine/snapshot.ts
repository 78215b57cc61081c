/**
 * The snapshot the whole full load reads: exported by a holder transaction that stays open
 * until the migration releases it (load and comparison done) or ends; every copy worker and
 * the comparison import it.
 */
import type pg from 'pg';
import { PgferryError } from './errors.js';

const SNAPSHOT_ID = /^[0-9A-F]+-[0-9A-F]+(-[0-9]+)?$/i;

/** Starts the holder transaction on `source` and returns the exported snapshot id. */
export async function exportSnapshot(source: pg.Client): Promise<string> {
  await source.query('SET idle_in_transaction_session_timeout = 0');
  await source.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
  const { rows } = await source.query<{ snapshot: string }>('SELECT pg_export_snapshot() AS snapshot');
  return rows[0]!.snapshot;
}

export function checkSnapshotId(snapshot: string): void {
  // SET TRANSACTION SNAPSHOT takes no bind parameters: the id is checked before it is quoted into SQL.
  if (!SNAPSHOT_ID.test(snapshot)) {
    throw new PgferryError('pgferry.SnapshotInvalid', `"${snapshot}" is not a snapshot id (like 00000003-0000001B-1).`);
  }
}

/** Starts a read-only repeatable-read transaction that sees exactly what the exported snapshot sees (or its own, without one). */
export async function importSnapshot(source: pg.Client, snapshot?: string): Promise<void> {
  if (snapshot !== undefined) checkSnapshotId(snapshot);
  await source.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
  if (snapshot === undefined) return;
  try {
    await source.query(`SET TRANSACTION SNAPSHOT '${snapshot}'`);
  } catch (error) {
    await source.query('ROLLBACK').catch(() => undefined);
    throw new PgferryError(
      'pgferry.SnapshotLost',
      `Cannot read the source at the load's snapshot ${snapshot}: ${(error as Error).message}. The task holding the snapshot has ended; run the migration again.`,
    );
  }
}

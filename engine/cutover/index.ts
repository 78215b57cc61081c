/**
 * The source side of cutover: an optional write fence (new transactions read-only, other
 * sessions ended) and the LSN the streamer must reach before the target takes over.
 */
import type pg from 'pg';

/** application_name of the CDC task's sessions: the fence leaves them be, they drain the source. */
export const STREAMER_APPLICATION_NAME = 'pgferry-replicate';

/** Runs `ALTER DATABASE <the connected database> <action>`; returns the database's name. */
async function alterCurrentDatabase(source: pg.Client, action: string): Promise<string> {
  const { rows } = await source.query<{ db: string }>('SELECT current_database() AS db');
  const database = rows[0]!.db;
  await source.query(`ALTER DATABASE ${source.escapeIdentifier(database)} ${action}`);
  return database;
}

/** Makes the source database read-only for new sessions and ends every other client session on it. */
export async function fenceSource(source: pg.Client): Promise<{ database: string; sessionsEnded: number }> {
  const database = await alterCurrentDatabase(source, 'SET default_transaction_read_only = on');
  const ended = await source.query(
    `SELECT pg_terminate_backend(pid) FROM pg_stat_activity
      WHERE datname = current_database() AND pid <> pg_backend_pid() AND backend_type = 'client backend'
        AND application_name <> $1`,
    [STREAMER_APPLICATION_NAME],
  );
  return { database, sessionsEnded: ended.rowCount ?? 0 };
}

/** Lifts the fence (after a failed cutover the source must take writes again). */
export async function unfenceSource(source: pg.Client): Promise<void> {
  await alterCurrentDatabase(source, 'RESET default_transaction_read_only');
}

/**
 * The LSN the streamer drains to at cutover: a logical decoding message committed
 * synchronously after the fence. Everything committed before it has a smaller LSN, and its
 * synchronous commit flushes the WAL up to it (asynchronously committed transactions included),
 * so the walsender can read that far at once instead of waiting for the next flush.
 */
export async function markDrainPoint(source: pg.Client): Promise<string> {
  await source.query("BEGIN; SET LOCAL transaction_read_only = off; SET LOCAL synchronous_commit = on");
  try {
    const { rows } = await source.query<{ lsn: string }>("SELECT pg_logical_emit_message(true, 'pgferry', 'cutover')::text AS lsn");
    await source.query('COMMIT');
    return rows[0]!.lsn;
  } catch (error) {
    await source.query('ROLLBACK').catch(() => undefined);
    throw error;
  }
}

/**
 * Where the source's WAL ends: the insert position, which covers every committed transaction
 * even under synchronous_commit = off (pg_current_wal_lsn, the write position, may not yet).
 */
export async function currentWalLsn(source: pg.Client): Promise<string> {
  const { rows } = await source.query<{ lsn: string }>('SELECT pg_current_wal_insert_lsn()::text AS lsn');
  return rows[0]!.lsn;
}

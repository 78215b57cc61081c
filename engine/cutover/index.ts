/**
 * The source side of cutover: the LSN the streamer must reach before the target takes over, and
 * the source's WAL position. The write fence is in fence.ts.
 */
import type pg from 'pg';

/** application_name of the CDC task's sessions: the fence leaves them be (fence.ts), they drain the source. */
export const STREAMER_APPLICATION_NAME = 'pgferry-replicate';

/**
 * The LSN the streamer drains to at cutover: a logical decoding message committed
 * synchronously after the fence. Everything committed before it has a smaller LSN, and its
 * synchronous commit flushes the WAL up to it (asynchronously committed transactions included),
 * so the walsender can read that far at once instead of waiting for the next flush. The same
 * kind of marker, with another `content`, ends each pass of the fence check after the drain
 * (engine/cdc/fence-check.ts).
 */
export async function markDrainPoint(source: pg.Client, content = 'cutover'): Promise<string> {
  await source.query("BEGIN; SET LOCAL transaction_read_only = off; SET LOCAL synchronous_commit = on");
  try {
    const { rows } = await source.query<{ lsn: string }>("SELECT pg_logical_emit_message(true, 'pgferry', $1)::text AS lsn", [content]);
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

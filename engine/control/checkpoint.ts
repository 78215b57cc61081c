/**
 * The CDC statements on the control schema's replication tables: the applier's checkpoint
 * (`pgferry.replication`, written in the same target transaction as the changes it covers) and
 * the streamer's heartbeat, start and drain marks (`pgferry.replication_status`).
 * (docs/architecture.md, "Consistency")
 */
import type pg from 'pg';

/** The applied LSN the target holds for a migration (committed), or undefined. */
export async function readAppliedLsn(target: pg.ClientBase, migration: string): Promise<string | undefined> {
  const { rows } = await target.query<{ lsn: string | null }>('SELECT applied_lsn::text AS lsn FROM pgferry.replication WHERE migration = $1', [
    migration,
  ]);
  return rows[0]?.lsn ?? undefined;
}

/**
 * Whether the target holds every source commit ending at or below `lsn`: the applier's
 * checkpoint reached it, or the streamer processed past it (it had nothing more to apply).
 */
export async function targetHolds(target: pg.ClientBase, migration: string, lsn: string): Promise<boolean> {
  const { rows } = await target.query<{ holds: boolean }>(
    `SELECT coalesce((SELECT applied_lsn >= $2::pg_lsn FROM pgferry.replication WHERE migration = $1), false)
         OR coalesce((SELECT processed_lsn >= $2::pg_lsn FROM pgferry.replication_status WHERE migration = $1), false) AS holds`,
    [migration, lsn],
  );
  return rows[0]!.holds;
}

export interface Checkpoint {
  migration: string;
  /** End LSN of the last source commit the target transaction holds. */
  lsn: string;
  /** Its commit time, microseconds since 2000-01-01 UTC (pgoutput's clock). */
  commitTime: bigint;
  transactions: number;
  rows: number;
  /** The writing streamer's generation: the checkpoint is written only while it is the migration's current one. */
  generation?: number;
}

// Commit times are microseconds since 2000-01-01 UTC; split so both factors stay exact in float8.
const CHECKPOINT_SQL = `UPDATE pgferry.replication
   SET applied_lsn = $2::pg_lsn,
       applied_commit_time = '2000-01-01 00:00:00+00'::timestamptz
                             + ($3::bigint / 1000000) * interval '1 second'
                             + ($3::bigint % 1000000) * interval '1 microsecond',
       applied_at = now(),
       transactions_applied = transactions_applied + $4::bigint,
       rows_applied = rows_applied + $5::bigint
 WHERE migration = $1
   AND ($6::bigint IS NULL
        OR $6::bigint = (SELECT streamer_generation FROM pgferry.replication_status s WHERE s.migration = $1 FOR SHARE))`;

/**
 * Records how far the target has applied, inside the caller's open target transaction (the
 * caller commits). Returns how many replication rows matched: anything but 1 means the
 * migration has no registered replication, and the caller must not commit.
 */
export async function writeCheckpoint(target: pg.ClientBase, checkpoint: Checkpoint): Promise<number> {
  const { migration, lsn, commitTime, transactions, rows, generation } = checkpoint;
  const result = await target.query(CHECKPOINT_SQL, [migration, lsn, commitTime.toString(), transactions, rows, generation ?? null]);
  return result.rowCount ?? 0;
}

/** The streamer has (re)started streaming: clears the last error. */
export async function markStreaming(control: pg.ClientBase, migration: string): Promise<void> {
  await control.query('UPDATE pgferry.replication_status SET streaming_since = now(), last_error = NULL WHERE migration = $1', [migration]);
}

export interface HeartbeatRow {
  receivedLsn: string;
  processedLsn: string;
  sourceLsn: string;
  lagBytes: bigint;
  lagSeconds: number;
  rowsPerSecond: number;
}

/** What the workflow asks of the streamer, read back with each heartbeat. */
export interface StreamerRequest {
  /** The cutover's drain LSN, once requested. */
  drainLsn: string | null;
  /** The migration's phase (null when its row is gone). */
  phase: string | null;
  /** The source is fenced for cutover: the drain is checked past the drain point (fence-check.ts). */
  fenced?: boolean;
  /** A cutover was requested: the drain point may come any moment. */
  cutoverRequested?: boolean;
}

/** Writes one heartbeat; undefined when the migration's status row is gone. */
export async function writeHeartbeat(control: pg.ClientBase, migration: string, beat: HeartbeatRow): Promise<StreamerRequest | undefined> {
  const { rows } = await control.query<{ drain_lsn: string | null; phase: string | null; fenced: boolean; cutover_requested: boolean }>(
    `UPDATE pgferry.replication_status s
        SET received_lsn = $2::pg_lsn, processed_lsn = $3::pg_lsn, source_lsn = $4::pg_lsn, heartbeat_at = now(),
            lag_bytes = $5, lag_seconds = $6, rows_per_second = $7
      WHERE migration = $1
      RETURNING drain_lsn::text, (SELECT phase FROM pgferry.migrations WHERE name = $1) AS phase, fenced,
                cutover_requested_at IS NOT NULL AS cutover_requested`,
    [migration, beat.receivedLsn, beat.processedLsn, beat.sourceLsn, beat.lagBytes.toString(), beat.lagSeconds, beat.rowsPerSecond],
  );
  const row = rows[0];
  return row && { drainLsn: row.drain_lsn, phase: row.phase, fenced: row.fenced, cutoverRequested: row.cutover_requested };
}

export async function markDrained(control: pg.ClientBase, migration: string): Promise<void> {
  await control.query('UPDATE pgferry.replication_status SET drained_at = now() WHERE migration = $1', [migration]);
}

/**
 * Makes the caller the migration's streamer: a new generation, which every older streamer
 * finds at its next checkpoint or reconnect, and then stops (docs/architecture.md,
 * "One writer per slot"). Undefined when the migration has no replication registered.
 */
export async function claimStreamerGeneration(control: pg.ClientBase, migration: string): Promise<number | undefined> {
  const { rows } = await control.query<{ generation: string }>(
    'UPDATE pgferry.replication_status SET streamer_generation = streamer_generation + 1 WHERE migration = $1 RETURNING streamer_generation AS generation',
    [migration],
  );
  return rows[0] ? Number(rows[0].generation) : undefined;
}

/** The migration's current streamer generation (undefined: no replication registered). */
export async function currentStreamerGeneration(client: pg.ClientBase, migration: string): Promise<number | undefined> {
  const { rows } = await client.query<{ generation: string }>(
    'SELECT streamer_generation AS generation FROM pgferry.replication_status WHERE migration = $1',
    [migration],
  );
  return rows[0] ? Number(rows[0].generation) : undefined;
}

/**
 * The CDC rows of the control schema: `replication` (slot, consistent point, and the checkpoint
 * the applier writes with its changes) and `replication_status` (the streamer's heartbeat, lag,
 * and the workflow's requests: start applying, drain to an LSN for cutover).
 */
import type pg from 'pg';
import { clearChangeTracking } from './changed-keys.js';

export interface ReplicationStatusRow {
  slotName: string;
  publicationName: string;
  consistentLsn: string | null;
  appliedLsn: string | null;
  appliedAt: Date | null;
  transactionsApplied: number;
  rowsApplied: number;
  receivedLsn: string | null;
  processedLsn: string | null;
  sourceLsn: string | null;
  /** Seconds since the streamer's last heartbeat, or since it was (re)started if it has not beaten since. */
  heartbeatAgeSeconds: number | null;
  /** Seconds since the last heartbeat, or since apply was requested if there was none. */
  unhealthySeconds: number | null;
  fenced: boolean;
  /** The comparison while replicating (before cutover) has run. */
  liveCompared: boolean;
  /** The applier recorded changes the comparison while replicating has not verified (control/changed-keys.ts). */
  changesSinceLiveCompare: boolean;
  /** The comparison of those changes ran since the cutover was requested (or, without a request, at all). */
  incrementalCompared: boolean;
  /** How long the passes at the cutover request took (they share the machine with the applier, which may fall behind meanwhile). */
  incrementalCompareSeconds: number | null;
  lagBytes: number | null;
  lagSeconds: number | null;
  rowsPerSecond: number | null;
  applyRequested: boolean;
  streamingSince: Date | null;
  cutoverRequested: boolean;
  drainLsn: string | null;
  drained: boolean;
  /** Seconds from the cutover request until drained. */
  drainSeconds: number | null;
  /**
   * Seconds applications could not write: from the fence (or, without one, the drain point)
   * until the target was ready, or until now while cutover goes on; null before cutover.
   */
  writeUnavailableSeconds: number | null;
  /** FinishMigration marked the target ready for applications. */
  targetReady: boolean;
  restarts: number;
  lastError: string | null;
}

/** Registers the slot a migration streams from, with fresh checkpoint and status rows (a task started twice starts over). */
export async function registerReplication(
  target: pg.Client,
  migration: string,
  slot: { slotName: string; publicationName: string; consistentLsn: string | null },
): Promise<void> {
  await target.query('DELETE FROM pgferry.replication WHERE migration = $1', [migration]);
  await target.query('DELETE FROM pgferry.replication_status WHERE migration = $1', [migration]);
  await clearChangeTracking(target, migration);
  await target.query(
    'INSERT INTO pgferry.replication (migration, slot_name, publication_name, consistent_lsn) VALUES ($1, $2, $3, $4::pg_lsn)',
    [migration, slot.slotName, slot.publicationName, slot.consistentLsn],
  );
  await target.query('INSERT INTO pgferry.replication_status (migration) VALUES ($1)', [migration]);
}

export async function readReplicationStatus(target: pg.Client, migration: string): Promise<ReplicationStatusRow | undefined> {
  const exists = await target.query(
    "SELECT to_regclass('pgferry.replication_status') IS NOT NULL AS ok, to_regclass('pgferry.changed_keys') IS NOT NULL AS tracked",
  );
  if (!exists.rows[0]?.ok) return undefined;
  // Control schemas created before the incremental comparison have no changed keys.
  const tracking = exists.rows[0].tracked
    ? `EXISTS (SELECT 1 FROM pgferry.changed_keys k WHERE k.migration = r.migration)
         OR EXISTS (SELECT 1 FROM pgferry.changed_tables c WHERE c.migration = r.migration AND c.whole_lsn IS NOT NULL) AS changes_since_live_compare,
       coalesce(s.incremental_compared_at >= coalesce(s.cutover_requested_at, '-infinity'), false) AS incremental_compared,
       s.incremental_compare_seconds`
    : 'false AS changes_since_live_compare, false AS incremental_compared, NULL::float8 AS incremental_compare_seconds';
  const { rows } = await target.query(
    `SELECT r.slot_name, r.publication_name, r.consistent_lsn::text, r.applied_lsn::text, r.applied_at,
            r.transactions_applied::float8, r.rows_applied::float8,
            s.received_lsn::text, s.processed_lsn::text, s.source_lsn::text,
            extract(epoch FROM clock_timestamp() - greatest(s.heartbeat_at, s.restarted_at, s.apply_requested_at))::float8 AS heartbeat_age,
            extract(epoch FROM clock_timestamp() - coalesce(s.heartbeat_at, s.apply_requested_at))::float8 AS unhealthy,
            s.fenced, s.live_compared_at IS NOT NULL AS live_compared,
            s.lag_bytes::float8, s.lag_seconds, s.rows_per_second, s.apply_requested, s.streaming_since,
            s.cutover_requested_at IS NOT NULL AS cutover_requested, s.drain_lsn::text, s.drained_at IS NOT NULL AS drained,
            extract(epoch FROM s.drained_at - s.cutover_requested_at)::float8 AS drain_seconds,
            extract(epoch FROM coalesce(s.target_ready_at, clock_timestamp()) - coalesce(s.fenced_at, s.drain_set_at))::float8
              AS write_unavailable_seconds,
            s.target_ready_at IS NOT NULL AS target_ready,
            s.restarts, s.last_error, ${tracking}
       FROM pgferry.replication r JOIN pgferry.replication_status s USING (migration)
      WHERE r.migration = $1`,
    [migration],
  );
  const row = rows[0];
  if (!row) return undefined;
  return {
    slotName: row.slot_name,
    publicationName: row.publication_name,
    consistentLsn: row.consistent_lsn,
    appliedLsn: row.applied_lsn,
    appliedAt: row.applied_at,
    transactionsApplied: row.transactions_applied,
    rowsApplied: row.rows_applied,
    receivedLsn: row.received_lsn,
    processedLsn: row.processed_lsn,
    sourceLsn: row.source_lsn,
    heartbeatAgeSeconds: row.heartbeat_age,
    unhealthySeconds: row.unhealthy,
    fenced: row.fenced,
    liveCompared: row.live_compared,
    changesSinceLiveCompare: row.changes_since_live_compare,
    incrementalCompared: row.incremental_compared,
    incrementalCompareSeconds: row.incremental_compare_seconds,
    lagBytes: row.lag_bytes,
    lagSeconds: row.lag_seconds,
    rowsPerSecond: row.rows_per_second,
    applyRequested: row.apply_requested,
    streamingSince: row.streaming_since,
    cutoverRequested: row.cutover_requested,
    drainLsn: row.drain_lsn,
    drained: row.drained,
    drainSeconds: row.drain_seconds,
    writeUnavailableSeconds: row.write_unavailable_seconds,
    targetReady: row.target_ready,
    restarts: row.restarts,
    lastError: row.last_error,
  };
}

export async function requestApply(target: pg.Client, migration: string): Promise<void> {
  await target.query('UPDATE pgferry.replication_status SET apply_requested = true, apply_requested_at = coalesce(apply_requested_at, now()) WHERE migration = $1', [migration]);
}

/** Asks for cutover; the drain LSN is set separately, once the source is fenced (or right away without a fence). */
export async function requestCutover(target: pg.Client, migration: string): Promise<boolean> {
  const { rowCount } = await target.query(
    'UPDATE pgferry.replication_status SET cutover_requested_at = coalesce(cutover_requested_at, now()) WHERE migration = $1',
    [migration],
  );
  return rowCount === 1;
}

export async function setDrainLsn(target: pg.Client, migration: string, lsn: string): Promise<void> {
  await target.query('UPDATE pgferry.replication_status SET drain_lsn = $2::pg_lsn, drain_set_at = coalesce(drain_set_at, now()) WHERE migration = $1', [migration, lsn]);
}

export async function recordRestart(target: pg.Client, migration: string): Promise<void> {
  await target.query('UPDATE pgferry.replication_status SET restarts = restarts + 1, restarted_at = now() WHERE migration = $1', [migration]);
}

export async function recordReplicationError(target: pg.Client, migration: string, message: string): Promise<void> {
  await target.query('UPDATE pgferry.replication_status SET last_error = $2 WHERE migration = $1', [migration, message.slice(0, 10_000)]);
}

export async function recordFence(target: pg.Client, migration: string, fenced: boolean): Promise<void> {
  await target.query(
    'UPDATE pgferry.replication_status SET fenced = $2, fenced_at = CASE WHEN $2 THEN coalesce(fenced_at, now()) ELSE fenced_at END WHERE migration = $1',
    [migration, fenced],
  );
}

/** The target is ready for applications (FinishMigration): ends the write-unavailable window and returns it in seconds. */
export async function markTargetReady(target: pg.Client, migration: string): Promise<number | null> {
  const { rows } = await target.query<{ seconds: number | null }>(
    `UPDATE pgferry.replication_status SET target_ready_at = coalesce(target_ready_at, now()) WHERE migration = $1
     RETURNING extract(epoch FROM target_ready_at - coalesce(fenced_at, drain_set_at))::float8 AS seconds`,
    [migration],
  );
  return rows[0]?.seconds ?? null;
}

export async function recordLiveComparison(target: pg.Client, migration: string): Promise<void> {
  await target.query('UPDATE pgferry.replication_status SET live_compared_at = now() WHERE migration = $1', [migration]);
}

/**
 * A paused run's stream starts over from its checkpoint: the error that paused it is cleared,
 * and so is a cutover under way (the pause lifted the fence, so the source has moved past any
 * drain point): cutover is asked for again once the run is caught up.
 */
export async function resetReplicationForResume(target: pg.Client, migration: string): Promise<void> {
  await target.query(
    `UPDATE pgferry.replication_status SET last_error = NULL, cutover_requested_at = NULL, drain_lsn = NULL, drain_set_at = NULL, drained_at = NULL,
            fenced = false, fenced_at = NULL, target_ready_at = NULL, streaming_since = NULL, restarted_at = now()
      WHERE migration = $1`,
    [migration],
  );
}

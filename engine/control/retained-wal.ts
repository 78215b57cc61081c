/**
 * The WAL the migration's slot holds back on the source, as last measured
 * (engine/cdc/retained-wal.ts), on `pgferry.replication_status`: for status, the live line and
 * the report, and so that a crossing of the threshold is recorded as an event only once.
 */
import type pg from 'pg';

/** ok; over the threshold (or near max_slot_wal_keep_size); lost (invalidated or dropped). */
export type RetainedWalState = 'ok' | 'over' | 'lost';

export interface RetainedWalRecord {
  bytes: number | null;
  walStatus: string | null;
  safeWalSizeBytes: number | null;
  maxSlotWalKeepSizeBytes: number | null;
  invalidationReason: string | null;
  state: RetainedWalState;
  /** cdc.maxRetainedWal in bytes, null when the spec sets none. */
  thresholdBytes: number | null;
}

export interface RetainedWalRow extends RetainedWalRecord {
  /** The largest retained WAL measured since the slot was registered. */
  peakBytes: number | null;
  /** bytes as a share of max_slot_wal_keep_size; null without that limit. */
  keepSizeShare: number | null;
  /** Seconds since it was measured. */
  ageSeconds: number;
}

/**
 * Records a measurement (and the peak); returns the state recorded before it (undefined: the
 * migration has no replication registered, or it was never measured).
 */
export async function recordRetainedWal(control: pg.Client, migration: string, wal: RetainedWalRecord): Promise<RetainedWalState | undefined> {
  const { rows } = await control.query<{ previous: RetainedWalState | null }>(
    `WITH old AS (SELECT retained_wal_state FROM pgferry.replication_status WHERE migration = $1 FOR NO KEY UPDATE)
     UPDATE pgferry.replication_status s
        SET retained_wal_bytes = $2, retained_wal_peak_bytes = greatest(s.retained_wal_peak_bytes, $2),
            wal_status = $3, safe_wal_size = $4, max_slot_wal_keep_size = $5, slot_invalidation = $6,
            retained_wal_state = $7, retained_wal_threshold = $8, retained_wal_at = now()
       FROM old
      WHERE s.migration = $1
      RETURNING old.retained_wal_state AS previous`,
    [migration, wal.bytes, wal.walStatus, wal.safeWalSizeBytes, wal.maxSlotWalKeepSizeBytes, wal.invalidationReason, wal.state, wal.thresholdBytes],
  );
  return rows[0]?.previous ?? undefined;
}

/** The last measurement of the migration's slot; undefined when it was never measured. */
export async function readRetainedWal(control: pg.Client, migration: string): Promise<RetainedWalRow | undefined> {
  const { rows } = await control.query(
    // A control schema that an older pgferry created lacks the columns until its next run: nothing was measured.
    `SELECT 1 FROM information_schema.columns WHERE table_schema = 'pgferry' AND table_name = 'replication_status' AND column_name = 'retained_wal_at'`,
  );
  if (rows.length === 0) return undefined;
  return readRecorded(control, migration);
}

async function readRecorded(control: pg.Client, migration: string): Promise<RetainedWalRow | undefined> {
  const { rows } = await control.query(
    `SELECT retained_wal_bytes::float8 AS bytes, retained_wal_peak_bytes::float8 AS peak, wal_status, safe_wal_size::float8 AS safe,
            max_slot_wal_keep_size::float8 AS keep_size, slot_invalidation, retained_wal_state, retained_wal_threshold::float8 AS threshold,
            extract(epoch FROM clock_timestamp() - retained_wal_at)::float8 AS age
       FROM pgferry.replication_status WHERE migration = $1 AND retained_wal_at IS NOT NULL`,
    [migration],
  );
  const row = rows[0];
  if (!row) return undefined;
  return {
    bytes: row.bytes,
    peakBytes: row.peak,
    walStatus: row.wal_status,
    safeWalSizeBytes: row.safe,
    maxSlotWalKeepSizeBytes: row.keep_size,
    keepSizeShare: row.bytes !== null && row.keep_size ? row.bytes / row.keep_size : null,
    invalidationReason: row.slot_invalidation,
    state: row.retained_wal_state,
    thresholdBytes: row.threshold,
    ageSeconds: row.age,
  };
}

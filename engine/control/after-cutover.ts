/**
 * `pgferry.after_cutover`: what happens to a migration after its cutover. The reverse stream
 * armed at cutover (cutover.reverse), the operator's `pgferry fallback` or `pgferry finish`
 * request, which the workflow's Reverse loop acts on, and the window of a fallback: from the
 * target's fence until the source takes writes again.
 */
import type pg from 'pg';
import { controlTableExists } from './schema.js';

export interface AfterCutoverRow {
  reverseArmed: boolean;
  switchLsn: string | null;
  /** 'target' or 'source': where cutover.switch last pointed the application's secret. */
  applicationSwitchedTo: string | null;
  fallbackRequested: boolean;
  finishRequested: boolean;
  dropControl: boolean;
  /** Seconds from the target's fence until the source was ready; so far while a fallback runs. */
  fallbackWindowSeconds: number | null;
  outcome: 'fallen-back' | 'finished' | null;
  lastError: string | null;
  /** The reverse stream as ReverseStatus last saw it on the source (status reads only the target). */
  reverse: { lagSeconds: number | null; lagBytes: number | null; rowsApplied: number; appliedLsn: string | null; error: string | null; seenSecondsAgo: number | null };
}

/** Undefined too when the control schema predates it. */
export async function readAfterCutover(client: pg.Client, migration: string): Promise<AfterCutoverRow | undefined> {
  if (!(await controlTableExists(client, 'after_cutover'))) return undefined;
  const { rows } = await client.query(
    `SELECT reverse_armed_at IS NOT NULL AS reverse_armed, switch_lsn::text, application_switched_to,
            fallback_requested_at IS NOT NULL AS fallback_requested, finish_requested_at IS NOT NULL AS finish_requested, drop_control,
            extract(epoch FROM coalesce(source_ready_at, now()) - target_fenced_at)::float8 AS fallback_window_seconds,
            outcome, last_error, reverse_lag_seconds, reverse_lag_bytes, reverse_rows_applied, reverse_applied_lsn::text, reverse_error,
            extract(epoch FROM now() - reverse_seen_at)::float8 AS reverse_seen_seconds_ago
       FROM pgferry.after_cutover WHERE migration = $1`,
    [migration],
  );
  const row = rows[0];
  return (
    row && {
      reverseArmed: row.reverse_armed,
      switchLsn: row.switch_lsn,
      applicationSwitchedTo: row.application_switched_to,
      fallbackRequested: row.fallback_requested,
      finishRequested: row.finish_requested,
      dropControl: row.drop_control,
      fallbackWindowSeconds: row.fallback_window_seconds,
      outcome: row.outcome,
      lastError: row.last_error,
      reverse: {
        lagSeconds: row.reverse_lag_seconds,
        lagBytes: row.reverse_lag_bytes === null ? null : Number(row.reverse_lag_bytes),
        rowsApplied: Number(row.reverse_rows_applied ?? 0),
        appliedLsn: row.reverse_applied_lsn,
        error: row.reverse_error,
        seenSecondsAgo: row.reverse_seen_seconds_ago,
      },
    }
  );
}

/** Cutover armed the reverse stream from `switchLsn` on the target. */
export async function recordReverseArmed(client: pg.Client, migration: string, switchLsn: string): Promise<void> {
  await client.query(
    `INSERT INTO pgferry.after_cutover (migration, reverse_armed_at, switch_lsn) VALUES ($1, now(), $2::pg_lsn)
     ON CONFLICT (migration) DO UPDATE SET reverse_armed_at = coalesce(pgferry.after_cutover.reverse_armed_at, now()), switch_lsn = excluded.switch_lsn`,
    [migration, switchLsn],
  );
}

export async function recordApplicationSwitch(client: pg.Client, migration: string, side: 'source' | 'target'): Promise<void> {
  await client.query(
    `INSERT INTO pgferry.after_cutover (migration, application_switched_to) VALUES ($1, $2)
     ON CONFLICT (migration) DO UPDATE SET application_switched_to = excluded.application_switched_to`,
    [migration, side],
  );
}

export async function requestFallback(client: pg.Client, migration: string): Promise<void> {
  await client.query('UPDATE pgferry.after_cutover SET fallback_requested_at = coalesce(fallback_requested_at, now()), last_error = NULL WHERE migration = $1', [
    migration,
  ]);
}

export async function requestFinish(client: pg.Client, migration: string, dropControl: boolean): Promise<void> {
  await client.query(
    `INSERT INTO pgferry.after_cutover (migration, finish_requested_at, drop_control) VALUES ($1, now(), $2)
     ON CONFLICT (migration) DO UPDATE SET finish_requested_at = coalesce(pgferry.after_cutover.finish_requested_at, now()), drop_control = $2, last_error = NULL`,
    [migration, dropControl],
  );
}

/** The fallback fenced the target: its window starts (a repeated fallback keeps the first fence's time). */
export async function recordTargetFenced(client: pg.Client, migration: string): Promise<void> {
  await client.query('UPDATE pgferry.after_cutover SET target_fenced_at = coalesce(target_fenced_at, now()) WHERE migration = $1', [migration]);
}

/** The source takes writes again: ends the fallback's window and returns it in seconds. */
export async function markSourceReady(client: pg.Client, migration: string): Promise<number | null> {
  const { rows } = await client.query<{ seconds: number | null }>(
    `UPDATE pgferry.after_cutover SET source_ready_at = coalesce(source_ready_at, now()), outcome = 'fallen-back', finished_at = now()
      WHERE migration = $1
     RETURNING extract(epoch FROM source_ready_at - target_fenced_at)::float8 AS seconds`,
    [migration],
  );
  return rows[0]?.seconds ?? null;
}

export async function markFinished(client: pg.Client, migration: string): Promise<void> {
  await client.query(
    `INSERT INTO pgferry.after_cutover (migration, outcome, finished_at) VALUES ($1, 'finished', now())
     ON CONFLICT (migration) DO UPDATE SET outcome = 'finished', finished_at = now()`,
    [migration],
  );
}

export async function recordAfterCutoverError(client: pg.Client, migration: string, message: string): Promise<void> {
  await client.query('UPDATE pgferry.after_cutover SET last_error = $2 WHERE migration = $1', [migration, message.slice(0, 10_000)]);
}

/** What ReverseStatus read of the reverse stream on the source, kept on the target for `pgferry status`. */
export async function recordReverseProgress(
  client: pg.Client,
  migration: string,
  progress: { lagSeconds: number | null; lagBytes: number | null; rowsApplied: number; appliedLsn: string | null; error: string | null },
): Promise<void> {
  await client.query(
    `UPDATE pgferry.after_cutover SET reverse_lag_seconds = $2, reverse_lag_bytes = $3, reverse_rows_applied = $4, reverse_applied_lsn = $5::pg_lsn,
            reverse_error = $6, reverse_seen_at = now()
      WHERE migration = $1`,
    [migration, progress.lagSeconds, progress.lagBytes, progress.rowsApplied, progress.appliedLsn, progress.error],
  );
}

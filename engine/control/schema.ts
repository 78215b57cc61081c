/**
 * The control schema in the target (`pgferry`): progress, units of work, events, schema
 * results and comparisons, keyed by migration name so many sources can feed one target.
 */
import type pg from 'pg';
import { CONTROL_SCHEMA } from '../catalog/tables.js';

export { CONTROL_SCHEMA };

const DDL = `
CREATE SCHEMA IF NOT EXISTS pgferry;
CREATE TABLE IF NOT EXISTS pgferry.migrations (
  name text PRIMARY KEY,
  spec_digest text NOT NULL,
  mode text NOT NULL,
  spec jsonb NOT NULL,
  phase text NOT NULL,
  snapshot text,
  snapshot_released boolean NOT NULL DEFAULT false,
  error text,
  execution text,
  started_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now(),
  finished_at timestamptz
);
-- Control schemas created before runs recorded their execution.
ALTER TABLE pgferry.migrations ADD COLUMN IF NOT EXISTS execution text;
CREATE TABLE IF NOT EXISTS pgferry.schema_objects (
  migration text NOT NULL REFERENCES pgferry.migrations ON DELETE CASCADE,
  phase text NOT NULL,
  kind text NOT NULL,
  identity text NOT NULL,
  status text NOT NULL,
  detail text,
  PRIMARY KEY (migration, kind, identity)
);
CREATE TABLE IF NOT EXISTS pgferry.tables (
  migration text NOT NULL REFERENCES pgferry.migrations ON DELETE CASCADE,
  source_schema text NOT NULL,
  source_table text NOT NULL,
  target_schema text NOT NULL,
  target_table text NOT NULL,
  estimated_rows bigint NOT NULL DEFAULT 0,
  estimated_bytes bigint NOT NULL DEFAULT 0,
  units_total int NOT NULL DEFAULT 0,
  PRIMARY KEY (migration, source_schema, source_table)
);
CREATE TABLE IF NOT EXISTS pgferry.units (
  migration text NOT NULL REFERENCES pgferry.migrations ON DELETE CASCADE,
  id int NOT NULL,
  source_schema text NOT NULL,
  source_table text NOT NULL,
  target_schema text NOT NULL,
  target_table text NOT NULL,
  columns text[] NOT NULL,
  where_clause text,
  from_page bigint,
  to_page bigint,
  binary_format boolean NOT NULL,
  owns_table boolean NOT NULL,
  estimated_bytes bigint NOT NULL,
  state text NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'done', 'failed')),
  last_error text,
  rows_copied bigint NOT NULL DEFAULT 0,
  bytes_copied bigint NOT NULL DEFAULT 0,
  finished_at timestamptz,
  PRIMARY KEY (migration, id)
);
-- Written outside the unit's own transaction (which holds the unit row locked while it copies).
CREATE TABLE IF NOT EXISTS pgferry.unit_progress (
  migration text NOT NULL,
  id int NOT NULL,
  attempts int NOT NULL DEFAULT 0,
  started_at timestamptz,
  attempt_started_at timestamptz,
  rows_copied bigint NOT NULL DEFAULT 0,
  bytes_copied bigint NOT NULL DEFAULT 0,
  PRIMARY KEY (migration, id),
  FOREIGN KEY (migration, id) REFERENCES pgferry.units ON DELETE CASCADE
);
-- Index builds and single-table constraints a copy worker runs as soon as the table's rows are in.
CREATE TABLE IF NOT EXISTS pgferry.index_jobs (
  migration text NOT NULL REFERENCES pgferry.migrations ON DELETE CASCADE,
  id int NOT NULL,
  table_schema text NOT NULL,
  table_name text NOT NULL,
  kind text NOT NULL,
  identity text NOT NULL,
  statements text[] NOT NULL,
  state text NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'done', 'existing', 'failed')),
  error text,
  PRIMARY KEY (migration, id)
);
CREATE TABLE IF NOT EXISTS pgferry.comparisons (
  migration text NOT NULL REFERENCES pgferry.migrations ON DELETE CASCADE,
  source_schema text NOT NULL,
  source_table text NOT NULL,
  method text NOT NULL,
  status text NOT NULL,
  source_rows bigint,
  target_rows bigint,
  ranges int NOT NULL DEFAULT 0,
  mismatched_ranges int NOT NULL DEFAULT 0,
  differences jsonb NOT NULL DEFAULT '[]',
  note text,
  compared_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (migration, source_schema, source_table)
);
-- CDC checkpoint: applied_lsn is written by the applier in the same target transaction as the
-- changes it covers; the slot is acknowledged only up to it.
CREATE TABLE IF NOT EXISTS pgferry.replication (
  migration text PRIMARY KEY REFERENCES pgferry.migrations ON DELETE CASCADE,
  slot_name text NOT NULL,
  publication_name text NOT NULL,
  consistent_lsn pg_lsn,
  applied_lsn pg_lsn,
  applied_commit_time timestamptz,
  applied_at timestamptz,
  transactions_applied bigint NOT NULL DEFAULT 0,
  rows_applied bigint NOT NULL DEFAULT 0
);
-- CDC heartbeat and requests, apart from the checkpoint row that a long apply transaction holds locked.
CREATE TABLE IF NOT EXISTS pgferry.replication_status (
  migration text PRIMARY KEY REFERENCES pgferry.migrations ON DELETE CASCADE,
  received_lsn pg_lsn,
  processed_lsn pg_lsn,
  source_lsn pg_lsn,
  heartbeat_at timestamptz,
  lag_bytes bigint,
  lag_seconds double precision,
  rows_per_second double precision,
  apply_requested boolean NOT NULL DEFAULT false,
  apply_requested_at timestamptz,
  restarted_at timestamptz,
  fenced boolean NOT NULL DEFAULT false,
  live_compared_at timestamptz,
  streaming_since timestamptz,
  cutover_requested_at timestamptz,
  drain_lsn pg_lsn,
  drained_at timestamptz,
  restarts int NOT NULL DEFAULT 0,
  last_error text
);
-- Control schemas created before streamers were fenced by generation.
ALTER TABLE pgferry.replication_status ADD COLUMN IF NOT EXISTS streamer_generation bigint NOT NULL DEFAULT 0;
-- Control schemas created before runs could pause: the phase a paused or failed run stopped in.
ALTER TABLE pgferry.migrations ADD COLUMN IF NOT EXISTS stopped_in text;
-- The WAL the slot holds back on the source, as last measured (engine/cdc/retained-wal.ts, control/retained-wal.ts).
ALTER TABLE pgferry.replication_status
  ADD COLUMN IF NOT EXISTS retained_wal_bytes bigint,
  ADD COLUMN IF NOT EXISTS retained_wal_peak_bytes bigint,
  ADD COLUMN IF NOT EXISTS wal_status text,
  ADD COLUMN IF NOT EXISTS safe_wal_size bigint,
  ADD COLUMN IF NOT EXISTS max_slot_wal_keep_size bigint,
  ADD COLUMN IF NOT EXISTS slot_invalidation text,
  ADD COLUMN IF NOT EXISTS retained_wal_state text,
  ADD COLUMN IF NOT EXISTS retained_wal_threshold bigint,
  ADD COLUMN IF NOT EXISTS retained_wal_at timestamptz;
-- The write-unavailable window of cutover: from the fence (or, without one, the drain point) until the target is ready.
ALTER TABLE pgferry.replication_status
  ADD COLUMN IF NOT EXISTS fenced_at timestamptz,
  ADD COLUMN IF NOT EXISTS target_ready_at timestamptz;
-- Without a fence the window starts when the drain point is set (not at the request: the comparison pass before it leaves writes open).
ALTER TABLE pgferry.replication_status ADD COLUMN IF NOT EXISTS drain_set_at timestamptz;
CREATE TABLE IF NOT EXISTS pgferry.events (
  id bigserial PRIMARY KEY,
  migration text NOT NULL,
  at timestamptz NOT NULL DEFAULT now(),
  level text NOT NULL,
  message text NOT NULL
);
-- The heartbeat of a local run's runner (control/runner.ts): status and cutover tell when it is gone.
ALTER TABLE pgferry.migrations ADD COLUMN IF NOT EXISTS runner_heartbeat_at timestamptz;
ALTER TABLE pgferry.migrations ADD COLUMN IF NOT EXISTS runner_pid int;
ALTER TABLE pgferry.migrations ADD COLUMN IF NOT EXISTS runner_host text;
-- Issue 15, item 4: the alerts sent to the migration's alerts.snsTopicArn (engine/alerts/), the
-- last one per kind: a condition is alerted once per episode (an episode of a pause or a failure
-- is the execution it happened in), again only once it ended and came back.
CREATE TABLE IF NOT EXISTS pgferry.alerts (
  migration text NOT NULL REFERENCES pgferry.migrations ON DELETE CASCADE,
  kind text NOT NULL,
  episode text NOT NULL DEFAULT '',
  active boolean NOT NULL,
  subject text NOT NULL,
  raised_at timestamptz NOT NULL DEFAULT now(),
  resolved_at timestamptz,
  PRIMARY KEY (migration, kind)
);

-- Schema changes captured on the source during CDC (issue 12, item 5): one row per change that
-- concerned the migration, by its capture id on the source. 'applied' and 'skipped' are written in
-- the applier's transaction; 'paused' and 'failed' when replication stopped at it.
CREATE TABLE IF NOT EXISTS pgferry.ddl_commands (
  migration text NOT NULL,
  capture_id bigint NOT NULL,
  statement text NOT NULL,
  status text NOT NULL CHECK (status IN ('applied', 'skipped', 'paused', 'failed')),
  detail text,
  at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (migration, capture_id)
);
-- Tables copied at a snapshot of their own while the slot streams (engine/cdc/table-sync.ts):
-- the stream applies a change of the table only in a transaction committed at or after start_lsn.
CREATE TABLE IF NOT EXISTS pgferry.table_sync (
  migration text NOT NULL,
  source_schema text NOT NULL,
  source_table text NOT NULL,
  start_lsn pg_lsn NOT NULL,
  rows_copied bigint NOT NULL DEFAULT 0,
  synced_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (migration, source_schema, source_table)
);
-- The source's WAL position when post-data began reading the source's definitions: a schema
-- change committed before it is already in what post-data built (engine/cdc/ddl/apply.ts).
ALTER TABLE pgferry.replication ADD COLUMN IF NOT EXISTS post_data_source_lsn pg_lsn;
-- After cutover (engine/control/after-cutover.ts): the reverse stream armed at cutover, the
-- operator's fallback or finish request, and the fallback's write-unavailable window.
CREATE TABLE IF NOT EXISTS pgferry.after_cutover (
  migration text PRIMARY KEY REFERENCES pgferry.migrations ON DELETE CASCADE,
  reverse_armed_at timestamptz,
  switch_lsn pg_lsn,
  application_switched_to text,
  fallback_requested_at timestamptz,
  finish_requested_at timestamptz,
  drop_control boolean NOT NULL DEFAULT false,
  target_fenced_at timestamptz,
  source_ready_at timestamptz,
  finished_at timestamptz,
  outcome text CHECK (outcome IN ('fallen-back', 'finished')),
  last_error text,
  reverse_lag_seconds double precision,
  reverse_lag_bytes bigint,
  reverse_rows_applied bigint,
  reverse_applied_lsn pg_lsn,
  reverse_error text,
  reverse_seen_at timestamptz
);
-- Row changes the stream found committed after the cutover's drain point, behind the fence
-- (engine/cdc/fence-check.ts): applied to the target, never dropped, and listed for the report.
CREATE TABLE IF NOT EXISTS pgferry.late_changes (
  migration text NOT NULL,
  commit_lsn pg_lsn NOT NULL,
  source_schema text NOT NULL,
  source_table text NOT NULL,
  rows bigint NOT NULL,
  keys text[] NOT NULL DEFAULT '{}',
  found_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (migration, commit_lsn, source_schema, source_table)
);
-- Issue 14, the incremental comparison (engine/control/changed-keys.ts). changed_keys and the
-- key columns / whole-table marks of changed_tables are written by the applier in the
-- transaction of its checkpoint; verified_tables by the comparison while replicating: a table
-- verified at verified_lsn holds what the source had then, so only what changed since needs a
-- second look behind the fence. No foreign key on changed_keys: it is written at apply rate.
CREATE TABLE IF NOT EXISTS pgferry.changed_keys (
  migration text NOT NULL,
  source_schema text NOT NULL,
  source_table text NOT NULL,
  key text[] NOT NULL,
  lsn pg_lsn NOT NULL,
  PRIMARY KEY (migration, source_schema, source_table, key)
);
CREATE TABLE IF NOT EXISTS pgferry.changed_tables (
  migration text NOT NULL REFERENCES pgferry.migrations ON DELETE CASCADE,
  source_schema text NOT NULL,
  source_table text NOT NULL,
  key_columns text[],
  whole_lsn pg_lsn,
  PRIMARY KEY (migration, source_schema, source_table)
);
CREATE TABLE IF NOT EXISTS pgferry.verified_tables (
  migration text NOT NULL REFERENCES pgferry.migrations ON DELETE CASCADE,
  source_schema text NOT NULL,
  source_table text NOT NULL,
  verified_lsn pg_lsn NOT NULL,
  matched boolean NOT NULL,
  verified_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (migration, source_schema, source_table)
);
ALTER TABLE pgferry.replication_status ADD COLUMN IF NOT EXISTS incremental_compared_at timestamptz;
ALTER TABLE pgferry.replication_status ADD COLUMN IF NOT EXISTS incremental_compare_seconds float8;
-- Issue 15, name mapping (engine/schema/apply-mapping.ts): when a run's objects got their target
-- names, and each rename (identities as format('%I.%I') strings).
ALTER TABLE pgferry.migrations ADD COLUMN IF NOT EXISTS names_mapped_at timestamptz;
CREATE TABLE IF NOT EXISTS pgferry.renamed_objects (
  migration text NOT NULL REFERENCES pgferry.migrations ON DELETE CASCADE,
  kind text NOT NULL,
  source_identity text NOT NULL,
  target_identity text NOT NULL,
  numbered boolean NOT NULL DEFAULT false,
  PRIMARY KEY (migration, kind, source_identity)
);
-- Issue 15, flow control (engine/control/flow.ts). flow_limits: the limits pgferry throttle set
-- for a run, per phase (NULL: the spec's; 0: none). flow_workers: the copy workers and the CDC
-- applier that share them, each beating every second with the share it applies; a limit is
-- divided by the live workers of its kind.
CREATE TABLE IF NOT EXISTS pgferry.flow_limits (
  migration text PRIMARY KEY REFERENCES pgferry.migrations ON DELETE CASCADE,
  load_rows_per_second bigint CHECK (load_rows_per_second >= 0),
  load_bytes_per_second bigint CHECK (load_bytes_per_second >= 0),
  cdc_rows_per_second bigint CHECK (cdc_rows_per_second >= 0),
  cdc_bytes_per_second bigint CHECK (cdc_bytes_per_second >= 0),
  changed_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS pgferry.flow_workers (
  migration text NOT NULL REFERENCES pgferry.migrations ON DELETE CASCADE,
  worker text NOT NULL,
  kind text NOT NULL CHECK (kind IN ('load', 'cdc')),
  started_at timestamptz NOT NULL DEFAULT now(),
  heartbeat_at timestamptz NOT NULL DEFAULT now(),
  stopped_at timestamptz,
  workers int NOT NULL DEFAULT 1,
  rows_per_second double precision,
  bytes_per_second double precision,
  PRIMARY KEY (migration, worker)
);`;

/** Creates the control schema if it is missing (safe to run concurrently with itself). */
export async function ensureControlSchema(client: pg.Client): Promise<void> {
  // An advisory lock keeps two migrations starting at once from racing on CREATE … IF NOT EXISTS.
  await client.query('SELECT pg_advisory_lock(hashtext($1))', ['pgferry.control-schema']);
  try {
    await client.query(DDL);
  } finally {
    await client.query('SELECT pg_advisory_unlock(hashtext($1))', ['pgferry.control-schema']);
  }
}

/** Whether the target has the control schema (its migrations table): a target pgferry never ran on has none. */
export async function controlSchemaExists(client: pg.ClientBase): Promise<boolean> {
  return controlTableExists(client, 'migrations');
}

/** Whether the control schema has `table`: a control schema an earlier version created may lack the newer ones. */
export async function controlTableExists(client: pg.ClientBase, table: string): Promise<boolean> {
  const { rows } = await client.query<{ ok: boolean }>('SELECT to_regclass($1) IS NOT NULL AS ok', [`pgferry.${table}`]);
  return Boolean(rows[0]?.ok);
}

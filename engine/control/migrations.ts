/**
 * `pgferry.migrations`: one row per migration name, the run that registered it (its spec,
 * execution and snapshot) and the phase it has reached.
 */
import { createHash } from 'node:crypto';
import type pg from 'pg';
import { PgferryError } from '../errors.js';
import { withTransaction } from '../sql.js';
import { controlSchemaExists } from './schema.js';

export function specDigest(spec: unknown): string {
  return createHash('sha256').update(JSON.stringify(spec)).digest('hex');
}

/** Another run of the same migration is registered and has not ended. */
export class MigrationRunningError extends PgferryError {
  constructor(name: string, phase: string, since: Date, execution: string | null) {
    super(
      'pgferry.MigrationRunning',
      `Migration ${name} is already running on this target (phase ${phase} since ${since.toISOString()}, ` +
        `${execution?.startsWith('arn:') ? `execution ${execution}` : 'a local run'}). Two runs of one migration would ` +
        `overwrite each other's progress and replication slot: wait for it to end, stop it (pgferry stop ` +
        `${execution?.startsWith('arn:') ? execution : 'SPEC'}), or give this run another name.`,
    );
  }
}

/**
 * Registers a run of the migration, replacing what an ended (done or failed) run of the same
 * name left; refuses while another run of it is under way (an EventBridge event delivered
 * twice starts two executions). `execution` is the Step Functions execution that runs it: a
 * retry of the same execution re-registers, and cleanup touches only its own run.
 */
export async function beginMigration(client: pg.Client, name: string, spec: { mode: string }, execution?: string): Promise<void> {
  await withTransaction(client, async () => {
    // Serializes two runs registering the same name at once.
    await client.query('SELECT pg_advisory_xact_lock(hashtext($1))', [`pgferry.migration.${name}`]);
    const { rows } = await client.query<{ phase: string; updated_at: Date; execution: string | null }>(
      'SELECT phase, updated_at, execution FROM pgferry.migrations WHERE name = $1',
      [name],
    );
    const existing = rows[0];
    if (existing && !['done', 'failed'].includes(existing.phase) && (execution === undefined || existing.execution !== execution)) {
      throw new MigrationRunningError(name, existing.phase, existing.updated_at, existing.execution);
    }
    await client.query('DELETE FROM pgferry.migrations WHERE name = $1', [name]);
    await client.query('INSERT INTO pgferry.migrations (name, spec_digest, mode, spec, phase, execution) VALUES ($1, $2, $3, $4, $5, $6)', [
      name,
      specDigest(spec),
      spec.mode,
      JSON.stringify(spec),
      'schema',
      execution ?? null,
    ]);
  });
}

/** The spec a migration runs with, as ValidateSpec normalized it (tasks read it here rather than from their environment). */
export async function loadSpec(client: pg.Client, name: string): Promise<unknown> {
  const { rows } = await client.query<{ spec: unknown }>('SELECT spec FROM pgferry.migrations WHERE name = $1', [name]);
  if (rows.length === 0) throw new Error(`Migration ${name} is not registered in the target's control schema.`);
  return rows[0]!.spec;
}

export interface MigrationState {
  phase: Phase;
  snapshot: string | null;
  snapshotReleased: boolean;
  error: string | null;
  execution: string | null;
}

export async function migrationState(client: pg.Client, name: string): Promise<MigrationState | undefined> {
  const { rows } = await client.query(
    'SELECT phase, snapshot, snapshot_released, error, execution FROM pgferry.migrations WHERE name = $1',
    [name],
  );
  const row = rows[0];
  return row && { phase: row.phase, snapshot: row.snapshot, snapshotReleased: row.snapshot_released, error: row.error, execution: row.execution };
}

/** The migration's state, or undefined when it is not registered or the target has no control schema. */
export async function findMigration(client: pg.Client, name: string): Promise<MigrationState | undefined> {
  return (await controlSchemaExists(client)) ? migrationState(client, name) : undefined;
}

/** A run as the progress views show it: its mode, phase and how long it has taken. */
export interface MigrationRun {
  /** The execution that registered the run (an ARN on AWS, `local:…` locally). */
  execution: string | null;
  mode: string;
  phase: Phase;
  error: string | null;
  startedAt: Date;
  finishedAt: Date | null;
  /** Since it started: until it finished, or until now while it runs. */
  seconds: number;
}

export async function migrationRun(client: pg.Client, name: string): Promise<MigrationRun | undefined> {
  const { rows } = await client.query(
    `SELECT execution, mode, phase, error, started_at, finished_at,
            extract(epoch FROM coalesce(finished_at, now()) - started_at)::float8 AS seconds
       FROM pgferry.migrations WHERE name = $1`,
    [name],
  );
  const row = rows[0];
  return row && { execution: row.execution, mode: row.mode, phase: row.phase, error: row.error, startedAt: row.started_at, finishedAt: row.finished_at, seconds: row.seconds };
}

/** Records the snapshot the full load reads at (null: none, e.g. a resumed slot), not yet released. */
export async function recordSnapshot(client: pg.Client, name: string, snapshot: string | null): Promise<void> {
  await client.query('UPDATE pgferry.migrations SET snapshot = $2, snapshot_released = false WHERE name = $1', [name, snapshot]);
}

export type Phase = 'schema' | 'load' | 'post-data' | 'replicate' | 'cutover' | 'compare' | 'done' | 'failed';

export async function setPhase(client: pg.Client, name: string, phase: Phase, error?: string): Promise<void> {
  await client.query(
    `UPDATE pgferry.migrations SET phase = $2, error = coalesce($3, error), updated_at = now(),
            finished_at = CASE WHEN $2 IN ('done', 'failed') THEN now() END,
            snapshot_released = snapshot_released OR $2 IN ('done', 'failed')
      WHERE name = $1`,
    [name, phase, error ?? null],
  );
}

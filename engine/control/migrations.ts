/**
 * `pgferry.migrations`: one row per migration name, the run that registered it (its spec,
 * execution and snapshot) and the phase it has reached.
 */
import { createHash } from 'node:crypto';
import type pg from 'pg';
import { PgferryError } from '../errors.js';
import { withTransaction } from '../sql.js';
import { controlSchemaExists } from './schema.js';

/** JSON with the keys of every object sorted, as jsonb stores them: equal values give equal text. */
function canonicalJson(value: unknown): string {
  return JSON.stringify(value, (_key, item: unknown) =>
    item && typeof item === 'object' && !Array.isArray(item) ? Object.fromEntries(Object.entries(item).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) : item,
  );
}

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

/** A new run with existingTables drop or truncate would throw away what a finished run moved: after a cutover, the production tables. */
export class DestructiveRerunError extends PgferryError {
  constructor(name: string, existingTables: string, finishedAt: Date, tables: string[]) {
    const shown = tables.slice(0, 20).join(', ') + (tables.length > 20 ? `, and ${tables.length - 20} more` : '');
    super(
      'pgferry.DestructiveRerun',
      `Migration ${name} finished on this target (done, ${finishedAt.toISOString()}); running it again with schema.existingTables "${existingTables}" ` +
        `would ${existingTables} the ${tables.length} table(s) it loaded${tables.length ? ` (${shown})` : ''}, which may be in production use since its cutover. ` +
        `Nothing was changed. To replace them anyway, run again with --force (on AWS: start with {"spec": …, "force": true}); or give the run another name, or set existingTables to "error".`,
    );
  }
}

/** The target tables a run loaded, qualified. */
async function loadedTargetTables(client: pg.Client, name: string): Promise<string[]> {
  const { rows } = await client.query<{ name: string }>(
    "SELECT format('%I.%I', target_schema, target_table) AS name FROM pgferry.tables WHERE migration = $1 ORDER BY 1",
    [name],
  );
  return rows.map((row) => row.name);
}

/** A new run of a paused migration would throw away its slot and the data it has moved. */
export class MigrationPausedError extends PgferryError {
  constructor(name: string) {
    super(
      'pgferry.MigrationPaused',
      `Migration ${name} is paused on this target, with its replication slot and the data it has moved kept: continue it with ` +
        `pgferry resume SPEC (or the ARN of its execution), or abandon it with pgferry stop SPEC --drop before you run it anew.`,
    );
  }
}

/**
 * Registers a run of the migration, replacing what an ended (done or failed) run of the same
 * name left; refuses while another run of it is under way (an EventBridge event delivered
 * twice starts two executions). `execution` is the Step Functions execution that runs it: a
 * retry of the same execution re-registers, and cleanup touches only its own run.
 */
export async function beginMigration(
  client: pg.Client,
  name: string,
  spec: { mode: string; schema?: { existingTables: string } },
  execution?: string,
  { force = false } = {},
): Promise<void> {
  await withTransaction(client, async () => {
    // Serializes two runs registering the same name at once.
    await client.query('SELECT pg_advisory_xact_lock(hashtext($1))', [`pgferry.migration.${name}`]);
    const { rows } = await client.query<{ phase: string; updated_at: Date; execution: string | null }>(
      'SELECT phase, updated_at, execution FROM pgferry.migrations WHERE name = $1',
      [name],
    );
    const existing = rows[0];
    if (existing?.phase === 'paused') throw new MigrationPausedError(name);
    const destructive = spec.schema?.existingTables === 'drop' || spec.schema?.existingTables === 'truncate';
    if (existing?.phase === 'done' && destructive && !force && existing.execution !== execution) {
      throw new DestructiveRerunError(name, spec.schema!.existingTables, existing.updated_at, await loadedTargetTables(client, name));
    }
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
  /** The phase a paused or failed run stopped in. */
  stoppedIn: Phase | null;
}

export async function migrationState(client: pg.Client, name: string): Promise<MigrationState | undefined> {
  const { rows } = await client.query(
    'SELECT phase, snapshot, snapshot_released, error, execution, stopped_in FROM pgferry.migrations WHERE name = $1',
    [name],
  );
  const row = rows[0];
  return (
    row && { phase: row.phase, snapshot: row.snapshot, snapshotReleased: row.snapshot_released, error: row.error, execution: row.execution, stoppedIn: row.stopped_in }
  );
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

/** 'reverse': cut over, the target takes the writes and they flow back to the source until `pgferry finish` or `pgferry fallback` ('fallback' while it runs). */
export type Phase = 'schema' | 'load' | 'post-data' | 'replicate' | 'cutover' | 'compare' | 'reverse' | 'fallback' | 'paused' | 'done' | 'failed';

/** The run's tasks have nothing more to do: it finished, failed, or paused (a resume starts new ones). */
export const runHasStopped = (phase: string | null | undefined): boolean => phase === 'done' || phase === 'failed' || phase === 'paused';

/**
 * Moves the run to `phase`. A run that fails or pauses records the phase it stopped in; a paused
 * run keeps its slot, publication and target data, and only a resume (takeOverRun) or an
 * abandon (failed) ends the pause.
 */
export async function setPhase(client: pg.Client, name: string, phase: Phase, error?: string): Promise<void> {
  await client.query(
    `UPDATE pgferry.migrations SET stopped_in = CASE WHEN $2 IN ('failed', 'paused') AND phase NOT IN ('failed', 'paused') THEN phase ELSE stopped_in END,
            phase = $2, error = coalesce($3, error), updated_at = now(),
            finished_at = CASE WHEN $2 IN ('done', 'failed') THEN now() END,
            snapshot_released = snapshot_released OR $2 IN ('done', 'failed', 'paused')
      WHERE name = $1`,
    [name, phase, error ?? null],
  );
}

/** Why a run cannot be resumed, and what to do instead. */
export class ResumeRefusedError extends PgferryError {
  constructor(message: string) {
    super('pgferry.ResumeRefused', message);
  }
}

/** A registered run as resume sees it. */
export interface ResumableRun {
  phase: Phase;
  /** The phase a paused or failed run stopped in. */
  stoppedIn: Phase | null;
  execution: string | null;
  mode: string;
}

/**
 * Hands a paused (or, in mode full, failed) run to the execution that resumes it, with the spec
 * it resumes with: the mode and the object selection must stay as they were, the rest (conflict
 * policy, batch sizes, cutover settings…) may change. The earlier execution, if it still waits
 * in its paused loop, sees the new owner and ends. An execution that `continues` the registered
 * one (ContinueAsNew) takes the run over as it is, whatever its phase.
 */
export async function takeOverRun(
  client: pg.Client,
  name: string,
  spec: { mode: string; objects: unknown },
  execution: string,
  { continues }: { continues?: string | null } = {},
): Promise<ResumableRun> {
  return withTransaction(client, async () => {
    await client.query('SELECT pg_advisory_xact_lock(hashtext($1))', [`pgferry.migration.${name}`]);
    const { rows } = await client.query(
      'SELECT phase, stopped_in, execution, mode, spec FROM pgferry.migrations WHERE name = $1 FOR UPDATE',
      [name],
    );
    const row = rows[0];
    if (!row) throw new ResumeRefusedError(`Migration ${name} is not registered on this target: there is nothing to resume. Start it with pgferry run SPEC.`);
    const run: ResumableRun = { phase: row.phase, stoppedIn: row.stopped_in, execution: row.execution, mode: row.mode };
    if (row.execution === execution) return run;
    if (continues && row.execution === continues) {
      // The workflow continuing itself: the run goes on as it is, paused or not, under the new execution.
      await client.query('UPDATE pgferry.migrations SET execution = $2, updated_at = now() WHERE name = $1', [name, execution]);
      return run;
    }
    const resumable = row.phase === 'paused' || (row.phase === 'failed' && row.mode === 'full');
    if (!resumable) {
      throw new ResumeRefusedError(
        row.phase === 'done'
          ? `Migration ${name} is done: there is nothing to resume.`
          : row.phase === 'failed'
            ? `Migration ${name} failed and was abandoned (its replication slot is gone): it cannot resume; run it anew.`
            : `Migration ${name} is running (phase ${row.phase}, ${row.execution ?? 'a local run'}): only a paused run resumes. If its runner or execution is gone, pause it first with pgferry stop SPEC (it keeps the slot), then resume.`,
      );
    }
    if (spec.mode !== row.mode) {
      throw new ResumeRefusedError(`Migration ${name} ran with mode "${row.mode}"; it cannot resume with mode "${spec.mode}". Resume with the spec it ran with (mode and objects unchanged).`);
    }
    if (canonicalJson(spec.objects) !== canonicalJson(row.spec.objects)) {
      throw new ResumeRefusedError(`Migration ${name} cannot resume with another object selection (objects changed in the spec): the slot and the loaded tables are for the selection it ran with. Restore "objects", or abandon it (pgferry stop SPEC --drop) and run it anew.`);
    }
    await client.query(
      `UPDATE pgferry.migrations SET execution = $2, spec = $3, spec_digest = $4, phase = coalesce(stopped_in, phase),
              error = NULL, finished_at = NULL, updated_at = now()
        WHERE name = $1`,
      [name, execution, JSON.stringify(spec), specDigest(spec)],
    );
    return run;
  });
}

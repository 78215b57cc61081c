/**
 * The reverse run of a migration (cutover.reverse): after cutover the target's changes flow back
 * to the source, so the SOURCE holds a control schema too, with this migration registered there
 * (mode 'reverse') and its replication rows: the reverse streamer's checkpoint, heartbeat and
 * drain requests work exactly as the forward ones do on the target.
 */
import type pg from 'pg';
import { PgferryError } from '../errors.js';
import { withTransaction } from '../sql.js';
import { specDigest } from './migrations.js';
import { registerReplication, requestApply } from './replication.js';
import { controlSchemaExists } from './schema.js';

/** `pgferry.migrations.mode` of a reverse run. */
export const REVERSE_MODE = 'reverse';

/**
 * Registers the reverse run on the source with fresh replication rows that start at the reverse
 * slot's consistent point, apply requested. Replaces an earlier reverse run of the migration;
 * refuses when the source's control schema holds a run of that name that is not a reverse run.
 */
export async function registerReverseRun(
  source: pg.Client,
  migration: string,
  spec: unknown,
  slot: { slotName: string; publicationName: string; consistentLsn: string },
): Promise<void> {
  await withTransaction(source, async () => {
    await source.query('SELECT pg_advisory_xact_lock(hashtext($1))', [`pgferry.migration.${migration}`]);
    const { rows } = await source.query<{ mode: string }>('SELECT mode FROM pgferry.migrations WHERE name = $1', [migration]);
    if (rows[0] && rows[0].mode !== REVERSE_MODE) {
      throw new PgferryError(
        'pgferry.ReverseNameTaken',
        `The source's control schema already holds a migration named ${migration} (mode ${rows[0].mode}), so its reverse stream cannot be registered there: give one of the two migrations another name.`,
      );
    }
    await source.query('DELETE FROM pgferry.migrations WHERE name = $1', [migration]);
    await source.query("INSERT INTO pgferry.migrations (name, spec_digest, mode, spec, phase) VALUES ($1, $2, $3, $4, 'replicate')", [
      migration,
      specDigest(spec),
      REVERSE_MODE,
      JSON.stringify(spec),
    ]);
    await registerReplication(source, migration, slot);
    await requestApply(source, migration);
  });
}

/** Whether the source holds a reverse run of the migration. */
export async function reverseRunRegistered(source: pg.Client, migration: string): Promise<boolean> {
  if (!(await controlSchemaExists(source))) return false;
  const { rowCount } = await source.query('SELECT 1 FROM pgferry.migrations WHERE name = $1 AND mode = $2', [migration, REVERSE_MODE]);
  return Boolean(rowCount);
}

/** Tells the reverse streamer to stop (its next heartbeat reads phase 'done'); false when no reverse run is registered. */
export async function stopReverseRun(source: pg.Client, migration: string): Promise<boolean> {
  if (!(await controlSchemaExists(source))) return false;
  const { rowCount } = await source.query(
    "UPDATE pgferry.migrations SET phase = 'done', finished_at = coalesce(finished_at, now()), updated_at = now() WHERE name = $1 AND mode = $2",
    [migration, REVERSE_MODE],
  );
  return Boolean(rowCount);
}

/** Deletes the reverse run's rows from the source's control schema (its replication rows go with it). */
export async function deleteReverseRun(source: pg.Client, migration: string): Promise<void> {
  if (!(await controlSchemaExists(source))) return;
  await source.query('DELETE FROM pgferry.migrations WHERE name = $1 AND mode = $2', [migration, REVERSE_MODE]);
  await source.query('DELETE FROM pgferry.events WHERE migration = $1', [migration]);
}

/** The migrations other than `migration` registered in a control schema (which must then stay). */
export async function otherMigrations(client: pg.Client, migration: string): Promise<string[]> {
  if (!(await controlSchemaExists(client))) return [];
  const { rows } = await client.query<{ name: string }>('SELECT name FROM pgferry.migrations WHERE name <> $1 ORDER BY 1', [migration]);
  return rows.map((row) => row.name);
}

/** Drops the control schema (and everything in it). */
export async function dropControlSchema(client: pg.Client): Promise<boolean> {
  const { rowCount } = await client.query("SELECT 1 FROM pg_namespace WHERE nspname = 'pgferry'");
  if (!rowCount) return false;
  await client.query('DROP SCHEMA IF EXISTS pgferry CASCADE');
  return true;
}

/**
 * The write fence of cutover (and of fallback, on the target): writes to the migrated tables are
 * refused, not only discouraged. (docs/architecture.md, "Cutover and the fence")
 *
 * - A statement-level BEFORE INSERT OR UPDATE OR DELETE OR TRUNCATE trigger `pgferry_fence` on
 *   every fenced table, its partitions and inheritance children, and its ancestors (a write
 *   through a parent fires only the parent's statement triggers). It calls
 *   `pgferry_fence.refuse_write`, which raises SQLSTATE 25006 (read_only_sql_transaction)
 *   naming the migration and how to lift the fence. The trigger is ENABLE ORIGIN (the default):
 *   sessions with session_replication_role = replica, pgferry's appliers, still write.
 * - Then `ALTER DATABASE … SET default_transaction_read_only = on`, so that new sessions start
 *   read-only, and every other client session of the database is ended, except pgferry's own
 *   (application_name starting with 'pgferry'). Only when writers keep the triggers from their
 *   locks (brief waits, so no deadlock) are these done first and the triggers waited for longer.
 *
 * CREATE TRIGGER waits for every transaction that already wrote to the table, so once the
 * fence is committed, no statement of a session that is not a replica can write to a fenced
 * table. The fence's DDL is kept out of the DDL capture (it must not reach the other side).
 */
import type pg from 'pg';
import { FENCE_SCHEMA, type TableRef } from '../catalog/tables.js';
import { SKIP_DDL_CAPTURE_SQL } from '../cdc/ddl/capture.js';
import { PgferryError } from '../errors.js';
import { codeOf, withTransaction } from '../sql.js';

export { FENCE_SCHEMA };
/** The trigger's name on every fenced table. */
export const FENCE_TRIGGER = 'pgferry_fence';
/** A session opened after a fence starts read-only (the database's default); pgferry's own sessions must still write. */
export const writeThroughFence = (client: pg.Client) => client.query('SET default_transaction_read_only = off');

/** Sessions whose application_name starts with this are pgferry's own: the fence leaves them be. */
export const PGFERRY_APPLICATION_PREFIX = 'pgferry';

const REFUSE_WRITE_SQL = `
CREATE SCHEMA IF NOT EXISTS ${FENCE_SCHEMA};
CREATE OR REPLACE FUNCTION ${FENCE_SCHEMA}.refuse_write() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $fn$
BEGIN
  RAISE EXCEPTION USING
    ERRCODE = '25006',
    MESSAGE = format('writes to %I.%I are fenced by pgferry migration %s, which moved this database''s tables to its target: '
                     'write to the target, or lift the fence with pgferry fallback (back to this database), pgferry finish, or pgferry stop (cleanup)',
                     TG_TABLE_SCHEMA, TG_TABLE_NAME, TG_ARGV[0]),
    HINT = format('The fence is the trigger %s on each table and the schema %s; see pgferry status for migration %s.', '${FENCE_TRIGGER}', '${FENCE_SCHEMA}', TG_ARGV[0]);
END $fn$;`;

/** The given tables and every relation above or below them in an inheritance or partition tree (plain and partitioned tables). */
const FENCE_TREE_SQL = `
WITH RECURSIVE given AS (
  SELECT c.oid FROM unnest($1::text[], $2::text[]) AS t(schema, name)
    JOIN pg_namespace n ON n.nspname = t.schema JOIN pg_class c ON c.relnamespace = n.oid AND c.relname = t.name
), below AS (
  SELECT oid FROM given UNION SELECT i.inhrelid FROM pg_inherits i JOIN below b ON i.inhparent = b.oid
), above AS (
  SELECT oid FROM given UNION SELECT i.inhparent FROM pg_inherits i JOIN above a ON i.inhrelid = a.oid
)
SELECT format('%I.%I', n.nspname, c.relname) AS name,
       EXISTS (SELECT 1 FROM pg_trigger t WHERE t.tgrelid = c.oid AND t.tgname = $3) AS fenced
  FROM (SELECT oid FROM below UNION SELECT oid FROM above) r
  JOIN pg_class c ON c.oid = r.oid JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE c.relkind IN ('r', 'p')
 ORDER BY 1`;

/** Ends every other client session of the connected database, except pgferry's own; how many it ended. */
async function endOtherSessions(client: pg.Client): Promise<number> {
  const { rowCount } = await client.query(
    `SELECT pg_terminate_backend(pid) FROM pg_stat_activity
      WHERE datname = current_database() AND pid <> pg_backend_pid() AND backend_type = 'client backend'
        AND coalesce(application_name, '') NOT LIKE $1`,
    [`${PGFERRY_APPLICATION_PREFIX}%`],
  );
  return rowCount ?? 0;
}

const LOCK_TIMEOUT = '3s';
const LOCK_ATTEMPTS = 5;
/** Attempts at the triggers before any session is ended, each waiting at most this for a lock (below deadlock_timeout's 1 s default). */
const QUICK_ATTEMPTS = 5;
const QUICK_LOCK_TIMEOUT = '200ms';
/** lock_not_available, deadlock_detected: a writer held a table; try again. */
const LOCK_CONFLICTS = new Set<string | undefined>(['55P03', '40P01']);

export interface FenceResult {
  database: string;
  /** Client sessions ended (pgferry's own excepted). */
  sessionsEnded: number;
  /** Tables (with partitions, children and parents) carrying the fence's trigger. */
  tablesFenced: number;
}

/**
 * Refuses writes on `tables` (and their partitions, inheritance children and parents) in every
 * session but replica-role ones; then makes new sessions read-only by default and ends the other
 * client sessions (which also ends their open transactions). Idempotent: tables fenced already
 * are left as they are.
 */
export async function fenceWrites(client: pg.Client, tables: TableRef[], { migration }: { migration: string }): Promise<FenceResult> {
  const database = await currentDatabase(client);
  // The triggers first, each table's lock waited for only briefly (never long enough to deadlock
  // with a writer that holds another table): from their commit on, every write is refused, with
  // no moment where a new session's BEGIN READ WRITE could still write.
  let tablesFenced: number | undefined;
  for (let attempt = 1; attempt <= QUICK_ATTEMPTS && tablesFenced === undefined; attempt++) {
    try {
      tablesFenced = await withTransaction(client, () => createTriggers(client, tables, migration, QUICK_LOCK_TIMEOUT), 'BEGIN READ WRITE');
    } catch (error) {
      if (!LOCK_CONFLICTS.has(codeOf(error))) throw fenceFailed(migration, database, error, false);
    }
  }
  await withTransaction(client, () => client.query(`ALTER DATABASE ${client.escapeIdentifier(database)} SET default_transaction_read_only = on`), 'BEGIN READ WRITE');
  let sessionsEnded = await endOtherSessions(client);
  // Writers kept the triggers from their locks: with the other sessions ended and new ones read-only, wait longer.
  for (let attempt = 1; tablesFenced === undefined; attempt++) {
    try {
      tablesFenced = await withTransaction(client, () => createTriggers(client, tables, migration, LOCK_TIMEOUT), 'BEGIN READ WRITE');
    } catch (error) {
      // A session that connected after the others were ended holds a table: end it too, and try again.
      if (codeOf(error) !== '55P03' || attempt >= LOCK_ATTEMPTS) throw fenceFailed(migration, database, error, true);
      sessionsEnded += await endOtherSessions(client);
    }
  }
  return { database, sessionsEnded, tablesFenced };
}

function fenceFailed(migration: string, database: string, error: unknown, readOnly: boolean): PgferryError {
  return new PgferryError(
    'pgferry.FenceFailed',
    `Cannot fence the tables of migration ${migration} in database ${database}: ${(error as Error).message}. ` +
      (readOnly ? 'The source stays read-only for new sessions; run the cutover again, or lift the fence with pgferry stop.' : 'Nothing was fenced; run the cutover again.'),
    { cause: error },
  );
}

async function createTriggers(client: pg.Client, tables: TableRef[], migration: string, lockTimeout: string): Promise<number> {
  await client.query(`SET LOCAL lock_timeout = '${lockTimeout}'`);
  await client.query(SKIP_DDL_CAPTURE_SQL);
  await client.query(REFUSE_WRITE_SQL);
  const { rows } = await client.query<{ name: string; fenced: boolean }>(FENCE_TREE_SQL, [
    tables.map((t) => t.schema),
    tables.map((t) => t.name),
    FENCE_TRIGGER,
  ]);
  for (const table of rows.filter((r) => !r.fenced)) {
    await client.query(
      `CREATE TRIGGER ${FENCE_TRIGGER} BEFORE INSERT OR UPDATE OR DELETE OR TRUNCATE ON ${table.name}
         FOR EACH STATEMENT EXECUTE FUNCTION ${FENCE_SCHEMA}.refuse_write(${client.escapeLiteral(migration)})`,
    );
  }
  return rows.length;
}

export interface FenceState {
  /** Some part of a fence is in force: a fence trigger, or the database's read-only default. */
  fenced: boolean;
  /** Tables carrying the fence's trigger. */
  tables: number;
  /** The migration that fenced them (the first one, if several did). */
  migration: string | null;
  /** New sessions of the database start read-only (ALTER DATABASE … SET default_transaction_read_only). */
  readOnlyDefault: boolean;
  /** The schema of the fence's function exists. */
  schema: boolean;
}

/** Whether (and on how many tables) a fence is in force in the connected database. */
export async function fenceState(client: pg.Client): Promise<FenceState> {
  const { rows } = await client.query<{ tables: number; migration: string | null; read_only: boolean; schema: boolean }>(
    `SELECT (SELECT count(*)::int FROM pg_trigger t WHERE t.tgname = $1) AS tables,
            (SELECT min(convert_from(substring(t.tgargs FROM 1 FOR position('\\x00'::bytea IN t.tgargs) - 1), 'UTF8'))
               FROM pg_trigger t WHERE t.tgname = $1 AND t.tgnargs = 1) AS migration,
            EXISTS (SELECT 1 FROM pg_db_role_setting s JOIN pg_database d ON d.oid = s.setdatabase
                     WHERE d.datname = current_database() AND s.setrole = 0
                       AND s.setconfig && ARRAY['default_transaction_read_only=on', 'default_transaction_read_only=true']) AS read_only,
            EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $2) AS schema`,
    [FENCE_TRIGGER, FENCE_SCHEMA],
  );
  const row = rows[0]!;
  return { fenced: row.tables > 0 || row.read_only, tables: row.tables, migration: row.migration, readOnlyDefault: row.read_only, schema: row.schema };
}

/**
 * Removes every trace of a fence from the connected database: the triggers, the function and
 * its schema, and the database's read-only default. Idempotent; `lifted` says whether there
 * was anything to remove.
 */
export async function liftFence(client: pg.Client): Promise<{ lifted: boolean }> {
  const before = await fenceState(client);
  if (!before.fenced && !before.schema) return { lifted: false };
  const database = await currentDatabase(client);
  await withTransaction(
    client,
    async () => {
      await client.query(SKIP_DDL_CAPTURE_SQL);
      const { rows } = await client.query<{ name: string }>(
        `SELECT format('%I.%I', n.nspname, c.relname) AS name FROM pg_trigger t
           JOIN pg_class c ON c.oid = t.tgrelid JOIN pg_namespace n ON n.oid = c.relnamespace
          WHERE t.tgname = $1 ORDER BY 1`,
        [FENCE_TRIGGER],
      );
      for (const table of rows) await client.query(`DROP TRIGGER IF EXISTS ${FENCE_TRIGGER} ON ${table.name}`);
      await client.query(`DROP SCHEMA IF EXISTS ${FENCE_SCHEMA} CASCADE`);
      await client.query(`ALTER DATABASE ${client.escapeIdentifier(database)} RESET default_transaction_read_only`);
    },
    'BEGIN READ WRITE',
  );
  return { lifted: true };
}

async function currentDatabase(client: pg.Client): Promise<string> {
  const { rows } = await client.query<{ db: string }>('SELECT current_database() AS db');
  return rows[0]!.db;
}

/**
 * DDL capture on the source (issue 12, item 5): an event trigger writes every schema change
 * on a user object into `pgferry_capture.ddl_commands`, a table in the migration's
 * publication. The row is written in the DDL's own transaction, so pgoutput delivers it in
 * commit order with the data around it, and the applier (ddl/apply.ts) runs the statement on
 * the target at exactly that point of the stream.
 *
 * One capture serves every migration from the database: the table, the functions and the two
 * event triggers are shared; `pgferry_capture.publications` lists the publications using it,
 * with their selection (objects.include/exclude), so that a table created in the selection is
 * added to them by the trigger, in the CREATE's own transaction: its rows are streamed from
 * the first one, with no copy. The last migration to drop its publication removes it all.
 *
 * Privileges: creating event triggers takes a superuser (rds_superuser on RDS). The recording
 * function is SECURITY DEFINER, owned by the migration's source user, with a pinned
 * search_path; it reads the commands from pg_event_trigger_*() itself (which refuse to run
 * outside an event trigger) and takes the statement only if it is the backend's
 * current_query(), so nobody can write a statement into the table by calling it. The event
 * trigger function runs as the user doing the DDL, to pass that session's search_path.
 */
import type pg from 'pg';
import { CAPTURE_SCHEMA } from '../../catalog/tables.js';
import { PgferryError } from '../../errors.js';
import { withTransaction } from '../../sql.js';

export { CAPTURE_SCHEMA };
export const CAPTURE_TABLE = { schema: CAPTURE_SCHEMA, name: 'ddl_commands' } as const;
const EVENT_TRIGGERS = ['pgferry_capture_ddl', 'pgferry_capture_drop'];

/** Schemas whose objects are never captured. */
const IGNORED_SCHEMAS = `ARRAY['pg_catalog', 'information_schema', 'pg_toast', 'pgferry', 'pgferry_capture', 'pgferry_fence']`;

/**
 * Keeps the rest of the caller's transaction out of the capture: pgferry's own DDL on the
 * source that must not reach the target (the cutover fence's triggers, engine/cutover/fence.ts).
 */
export const SKIP_DDL_CAPTURE_SQL = "SELECT pg_catalog.set_config('pgferry_capture.nested', 'on', true)";

// String.raw: the SQL holds regular-expression backslashes.
const INSTALL_SQL = String.raw`
CREATE SCHEMA IF NOT EXISTS pgferry_capture;
GRANT USAGE ON SCHEMA pgferry_capture TO PUBLIC;
CREATE TABLE IF NOT EXISTS pgferry_capture.ddl_commands (
  id bigserial PRIMARY KEY,
  captured_at timestamptz NOT NULL DEFAULT clock_timestamp(),
  xid bigint NOT NULL DEFAULT txid_current(),
  command_tag text NOT NULL,
  objects jsonb NOT NULL,
  search_path text NOT NULL,
  statement text NOT NULL,
  published text[] NOT NULL DEFAULT '{}',
  publish_error text
);
CREATE TABLE IF NOT EXISTS pgferry_capture.publications (
  publication name PRIMARY KEY,
  include jsonb NOT NULL,
  exclude jsonb NOT NULL
);
REVOKE ALL ON ALL TABLES IN SCHEMA pgferry_capture FROM PUBLIC;
REVOKE ALL ON ALL SEQUENCES IN SCHEMA pgferry_capture FROM PUBLIC;

-- objects.include/exclude rules ([{schema, tables: [glob]}]) naming a table; globs as engine/catalog/tables.ts reads them.
CREATE OR REPLACE FUNCTION pgferry_capture.matches(rules jsonb, s text, n text) RETURNS boolean
LANGUAGE sql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $fn$
  SELECT EXISTS (
    SELECT 1 FROM jsonb_array_elements(rules) r, jsonb_array_elements_text(r->'tables') g
     WHERE r->>'schema' = s
       AND n ~ ('^' || replace(replace(regexp_replace(g, '([.+^$(){}|\[\]\\])', '\\\1', 'g'), '*', '.*'), '?', '.') || '$'))
$fn$;

-- Adds a table just created to every publication whose selection names it; what fails is reported, never raised (the DDL must not fail).
CREATE OR REPLACE FUNCTION pgferry_capture.publish_new_table(s text, n text, OUT published text[], OUT failure text)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $fn$
DECLARE p record;
BEGIN
  published := '{}';
  FOR p IN SELECT c.publication, c.include, c.exclude FROM pgferry_capture.publications c
            WHERE EXISTS (SELECT 1 FROM pg_publication x WHERE x.pubname = c.publication) ORDER BY 1 LOOP
    CONTINUE WHEN NOT ((jsonb_array_length(p.include) = 0 OR pgferry_capture.matches(p.include, s, n))
                       AND NOT pgferry_capture.matches(p.exclude, s, n));
    BEGIN
      EXECUTE format('ALTER PUBLICATION %I ADD TABLE %I.%I', p.publication, s, n);
      published := published || p.publication::text;
      -- Published without a key, the table would refuse the application's UPDATEs and DELETEs.
      IF EXISTS (SELECT 1 FROM pg_class k JOIN pg_namespace x ON x.oid = k.relnamespace
                  WHERE x.nspname = s AND k.relname = n AND k.relreplident = 'd'
                    AND NOT EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = k.oid AND i.indisprimary)) THEN
        PERFORM set_config('pgferry_capture.nested', 'on', true);
        EXECUTE format('ALTER TABLE %I.%I REPLICA IDENTITY FULL', s, n);
        PERFORM set_config('pgferry_capture.nested', 'off', true);
      END IF;
    EXCEPTION WHEN OTHERS THEN
      failure := concat_ws('; ', failure, format('publication %s: %s', p.publication, SQLERRM));
    END;
  END LOOP;
END $fn$;

CREATE OR REPLACE FUNCTION pgferry_capture.record(event text, tag text, path text, query text) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $fn$
DECLARE
  objs jsonb;
  created record;
  pubs text[] := '{}';
  failures text;
  outcome record;
BEGIN
  IF query IS DISTINCT FROM current_query() THEN
    RAISE EXCEPTION 'pgferry_capture.record is called only by the capture event trigger';
  END IF;
  -- The capture's own ALTER (REPLICA IDENTITY of a new table) is part of the change being captured.
  IF current_setting('pgferry_capture.nested', true) = 'on' THEN RETURN; END IF;
  IF event = 'sql_drop' THEN
    -- ALTER TABLE … DROP COLUMN/CONSTRAINT is captured at ddl_command_end; only DROP statements here.
    IF tag NOT LIKE 'DROP %' THEN RETURN; END IF;
    SELECT jsonb_agg(jsonb_build_object(
             'type', d.object_type, 'schema', d.schema_name, 'identity', d.object_identity,
             'table', CASE WHEN d.object_type = 'table' THEN jsonb_build_object('schema', d.schema_name, 'name', d.object_name) END))
      INTO objs
      FROM pg_event_trigger_dropped_objects() d
     WHERE d.original AND d.schema_name IS NOT NULL AND NOT d.is_temporary
       AND d.schema_name <> ALL (${IGNORED_SCHEMAS}) AND d.schema_name NOT LIKE 'pg\_temp%';
  ELSE
    SELECT jsonb_agg(jsonb_build_object(
             'type', c.object_type, 'schema', c.schema_name, 'identity', c.object_identity, 'command', c.command_tag,
             'partition', coalesce(k.relispartition, false),
             'table', CASE WHEN t.oid IS NOT NULL THEN jsonb_build_object('schema', tn.nspname, 'name', t.relname) END))
      INTO objs
      FROM pg_event_trigger_ddl_commands() c
      LEFT JOIN pg_class k ON c.classid = 'pg_class'::regclass AND k.oid = c.objid
      LEFT JOIN pg_index i ON i.indexrelid = k.oid
      LEFT JOIN pg_constraint con ON c.classid = 'pg_constraint'::regclass AND con.oid = c.objid
      LEFT JOIN pg_class t ON t.oid = CASE WHEN k.relkind IN ('r', 'p') THEN k.oid ELSE coalesce(i.indrelid, con.conrelid) END
      LEFT JOIN pg_namespace tn ON tn.oid = t.relnamespace
     WHERE NOT c.in_extension AND c.schema_name IS NOT NULL
       AND c.schema_name <> ALL (${IGNORED_SCHEMAS}) AND c.schema_name NOT LIKE 'pg\_temp%';
    -- A table created in a publication's selection joins it now, in this transaction: its rows are streamed from the first.
    FOR created IN SELECT n.nspname, k.relname FROM pg_event_trigger_ddl_commands() c
                     JOIN pg_class k ON c.classid = 'pg_class'::regclass AND k.oid = c.objid
                     JOIN pg_namespace n ON n.oid = k.relnamespace
                    WHERE c.command_tag = 'CREATE TABLE' AND k.relkind IN ('r', 'p') AND NOT k.relispartition
                      AND k.relpersistence = 'p' AND NOT c.in_extension AND n.nspname <> ALL (${IGNORED_SCHEMAS}) LOOP
      outcome := pgferry_capture.publish_new_table(created.nspname, created.relname);
      pubs := pubs || outcome.published;
      failures := concat_ws('; ', failures, outcome.failure);
    END LOOP;
  END IF;
  IF objs IS NULL THEN RETURN; END IF;
  INSERT INTO pgferry_capture.ddl_commands (command_tag, objects, search_path, statement, published, publish_error)
  VALUES (tag, objs, path, query, pubs, nullif(failures, ''));
END $fn$;
REVOKE ALL ON FUNCTION pgferry_capture.publish_new_table(text, text) FROM PUBLIC;

-- Runs as the user doing the DDL: only that session knows its search_path.
CREATE OR REPLACE FUNCTION pgferry_capture.capture() RETURNS event_trigger LANGUAGE plpgsql AS $fn$
BEGIN
  PERFORM pgferry_capture.record(TG_EVENT, TG_TAG, pg_catalog.current_setting('search_path'), pg_catalog.current_query());
END $fn$;

DO $do$ BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_event_trigger WHERE evtname = 'pgferry_capture_ddl') THEN
    CREATE EVENT TRIGGER pgferry_capture_ddl ON ddl_command_end EXECUTE FUNCTION pgferry_capture.capture();
  END IF;
  IF NOT EXISTS (SELECT 1 FROM pg_event_trigger WHERE evtname = 'pgferry_capture_drop') THEN
    CREATE EVENT TRIGGER pgferry_capture_drop ON sql_drop EXECUTE FUNCTION pgferry_capture.capture();
  END IF;
END $do$;`;

export interface CaptureSelection {
  include: { schema: string; tables: string[] }[];
  exclude: { schema: string; tables: string[] }[];
}

const LOCK = 'pgferry.ddl-capture';

/**
 * Installs the capture (idempotently) and registers `publication` with its selection. Call it
 * before the publication gets the capture table and before the slot is created, so that no
 * DDL after the slot's consistent point goes unseen.
 */
export async function installDdlCapture(source: pg.Client, publication: string, selection: CaptureSelection): Promise<void> {
  await withTransaction(source, async () => {
    await source.query('SELECT pg_advisory_xact_lock(hashtext($1))', [LOCK]);
    await source.query(INSTALL_SQL);
    await source.query(
      `INSERT INTO pgferry_capture.publications (publication, include, exclude) VALUES ($1, $2, $3)
       ON CONFLICT (publication) DO UPDATE SET include = excluded.include, exclude = excluded.exclude`,
      [publication, JSON.stringify(selection.include), JSON.stringify(selection.exclude)],
    );
  });
}

/**
 * Unregisters `publication`; when no other existing publication uses the capture, drops the
 * event triggers, the functions, the table and the schema. Returns whether it removed them.
 */
export async function removeDdlCapture(source: pg.Client, publication: string): Promise<boolean> {
  return withTransaction(source, async () => {
    await source.query('SELECT pg_advisory_xact_lock(hashtext($1))', [LOCK]);
    const { rows } = await source.query<{ installed: boolean; triggers: boolean }>(
      `SELECT to_regclass('pgferry_capture.publications') IS NOT NULL AS installed,
              EXISTS (SELECT 1 FROM pg_event_trigger WHERE evtname = ANY($1)) AS triggers`,
      [EVENT_TRIGGERS],
    );
    if (!rows[0]!.installed && !rows[0]!.triggers) return false;
    if (rows[0]!.installed) {
      await source.query('DELETE FROM pgferry_capture.publications WHERE publication = $1', [publication]);
      const others = await source.query(
        'SELECT 1 FROM pgferry_capture.publications c JOIN pg_publication p ON p.pubname = c.publication LIMIT 1',
      );
      if (others.rowCount) return false;
    }
    for (const trigger of EVENT_TRIGGERS) await source.query(`DROP EVENT TRIGGER IF EXISTS ${trigger}`);
    await source.query('DROP SCHEMA IF EXISTS pgferry_capture CASCADE');
    return true;
  });
}

/** Whether the source user may create event triggers: a superuser, or rds_superuser on RDS. */
export async function mayCaptureDdl(source: pg.Client): Promise<boolean> {
  const { rows } = await source.query<{ allowed: boolean }>(
    `SELECT r.rolsuper OR coalesce(pg_has_role(r.oid, (SELECT oid FROM pg_roles WHERE rolname = 'rds_superuser'), 'member'), false) AS allowed
       FROM pg_roles r WHERE r.rolname = current_user`,
  );
  return Boolean(rows[0]?.allowed);
}

/**
 * Installs the capture for a migration's publication when the source user may; returns whether
 * DDL will be captured. Without the privilege, cdc.ddl "replicate" cannot work and is refused;
 * "pause" and "error" go on without noticing schema changes (the precheck says so).
 */
export async function setUpDdlCapture(
  source: pg.Client,
  publication: string,
  options: { mode: 'replicate' | 'pause' | 'error'; selection: CaptureSelection; log: (message: string) => void },
): Promise<boolean> {
  if (!(await mayCaptureDdl(source))) {
    if (options.mode === 'replicate') {
      throw new PgferryError(
        'pgferry.DdlCaptureUnavailable',
        `The source user may not create event triggers, which cdc.ddl "replicate" needs to capture schema changes. ${CAPTURE_REMEDY}`,
      );
    }
    options.log(`schema changes on the source will not be detected: the source user may not create event triggers (cdc.ddl "${options.mode}")`);
    return false;
  }
  await installDdlCapture(source, publication, options.selection);
  return true;
}

export const CAPTURE_REMEDY =
  'Run the migration as a superuser (on RDS/Aurora: GRANT rds_superuser TO the user), or set cdc.ddl to "pause" or "error" (schema changes are then not detected: ' +
  'a column added on the source stops replication when its first value arrives; other changes go unnoticed).';

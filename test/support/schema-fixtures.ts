/**
 * Fixtures of the schema migration tests: objects beyond the sample shop database (domains,
 * ranges, composite types, sub-partitions, inheritance, view chains, materialized views,
 * extensions, trigger states…), and an independent reading of a catalog to compare two databases.
 */
import type pg from 'pg';

/** Objects added to the sample database on a source of `major`. Only things pgferry migrates (the pg_dump comparison relies on it). */
export function extraSchemaSql(major: number): string {
  return `
CREATE EXTENSION pg_trgm SCHEMA public;
CREATE SCHEMA extra;
CREATE COLLATION extra.bytes (provider = libc, locale = 'C');
CREATE EXTENSION citext SCHEMA extra;
CREATE TYPE extra.mood AS ENUM ('sad', 'ok', 'it''s "fine"');
CREATE DOMAIN extra.good_mood AS extra.mood CHECK (VALUE <> 'sad');
CREATE DOMAIN extra.positive_int AS integer DEFAULT 1 NOT NULL CONSTRAINT positive_int_check CHECK (VALUE > 0);
CREATE DOMAIN extra.code AS text COLLATE "C";
ALTER DOMAIN extra.code ADD CONSTRAINT code_upper CHECK (VALUE ~ '^[A-Z0-9]+$') NOT VALID;
CREATE TYPE extra.money_pair AS (amount numeric(12, 2), currency char(3) COLLATE "C", feeling extra.good_mood);
CREATE TYPE extra.floatrange AS RANGE (SUBTYPE = float8, SUBTYPE_DIFF = float8mi);
CREATE FUNCTION extra.next_code() RETURNS text LANGUAGE sql VOLATILE AS $$ SELECT 'C' || floor(random() * 1000)::int $$;
CREATE SEQUENCE extra.ticket_seq AS integer START 10 INCREMENT 5 MINVALUE 10 MAXVALUE 100000 CACHE 3 CYCLE;
CREATE TABLE extra.tickets (
  id integer PRIMARY KEY DEFAULT nextval('extra.ticket_seq'),
  code text NOT NULL DEFAULT extra.next_code(),
  qty extra.positive_int,
  label extra.code,
  feeling extra.good_mood NOT NULL DEFAULT 'ok',
  price extra.money_pair,
  span extra.floatrange,
  during tsrange,
  name text COLLATE "C",
  sort_key text COLLATE extra.bytes,
  big text,
  email extra.citext,
  EXCLUDE USING gist (during WITH &&),
  CONSTRAINT tickets_name_unique UNIQUE (name) DEFERRABLE INITIALLY DEFERRED
) WITH (fillfactor = 80, autovacuum_enabled = false);
ALTER TABLE extra.tickets ADD CONSTRAINT tickets_code_check CHECK (length(code) > 1) NOT VALID;
ALTER TABLE extra.tickets ALTER COLUMN big SET STORAGE EXTERNAL, ALTER COLUMN name SET STATISTICS 500;
ALTER TABLE extra.tickets REPLICA IDENTITY FULL;
ALTER SEQUENCE extra.ticket_seq OWNED BY extra.tickets.id;
CREATE INDEX tickets_lower_code ON extra.tickets (lower(code)) INCLUDE (feeling);
CREATE INDEX tickets_id_brin ON extra.tickets USING brin (id) WITH (pages_per_range = 16);
CREATE INDEX tickets_code_trgm ON extra.tickets USING gin (code public.gin_trgm_ops);
ALTER TABLE extra.tickets CLUSTER ON tickets_lower_code;
CREATE UNLOGGED TABLE extra.scratch (id int, note text);

CREATE TABLE extra.measurements (region text NOT NULL, at date NOT NULL, value numeric, UNIQUE (region, at)) PARTITION BY LIST (region);
CREATE TABLE extra.measurements_eu PARTITION OF extra.measurements FOR VALUES IN ('de', 'fr') PARTITION BY RANGE (at);
CREATE TABLE extra.measurements_eu_2025 PARTITION OF extra.measurements_eu FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');
CREATE TABLE extra.measurements_eu_rest PARTITION OF extra.measurements_eu DEFAULT;
CREATE TABLE extra.measurements_other PARTITION OF extra.measurements DEFAULT;
CREATE INDEX measurements_value_idx ON extra.measurements (value) WHERE value IS NOT NULL;
ALTER TABLE extra.measurements_other ALTER COLUMN value SET DEFAULT 0;
CREATE TABLE extra.readings (
  region text, at date, note text,
  FOREIGN KEY (region, at) REFERENCES extra.measurements (region, at) ON DELETE CASCADE DEFERRABLE
);
CREATE TABLE extra.base_item (id int PRIMARY KEY, kind text DEFAULT 'base');
CREATE TABLE extra.special_item (extra_info text NOT NULL) INHERITS (extra.base_item);
ALTER TABLE extra.special_item ALTER COLUMN kind SET DEFAULT 'special';

CREATE VIEW extra.ticket_codes AS SELECT id, code, qty FROM extra.tickets WHERE qty > 0 WITH CASCADED CHECK OPTION;
CREATE VIEW extra.ticket_code_lengths WITH (security_barrier) AS SELECT id, length(code) AS len FROM extra.ticket_codes;
ALTER VIEW extra.ticket_code_lengths ALTER COLUMN len SET DEFAULT 0;
CREATE MATERIALIZED VIEW extra.ticket_stats AS SELECT count(*) AS n FROM extra.ticket_code_lengths;
CREATE MATERIALIZED VIEW extra.ticket_stats_twice AS SELECT n * 2 AS n2 FROM extra.ticket_stats;
CREATE UNIQUE INDEX ticket_stats_n ON extra.ticket_stats (n);

CREATE SCHEMA aaa;
-- A function over a table's row type, in a schema that sorts first: it must still come after the table.
CREATE FUNCTION aaa.ticket_label(t extra.tickets) RETURNS text LANGUAGE sql IMMUTABLE AS $$ SELECT t.code || '/' || t.id $$;
CREATE VIEW aaa.labels AS SELECT aaa.ticket_label(t) AS label FROM extra.tickets t;
CREATE PROCEDURE extra.reset_tickets(keep integer DEFAULT 0) LANGUAGE plpgsql AS $$ BEGIN DELETE FROM extra.tickets WHERE id > keep; END $$;
CREATE FUNCTION extra.noop() RETURNS trigger LANGUAGE plpgsql SET search_path = pg_catalog AS $$ BEGIN RETURN NEW; END $$;
CREATE TRIGGER tickets_always BEFORE INSERT ON extra.tickets FOR EACH ROW EXECUTE FUNCTION extra.noop();
ALTER TABLE extra.tickets ENABLE ALWAYS TRIGGER tickets_always;
CREATE TRIGGER tickets_disabled BEFORE UPDATE OF code ON extra.tickets FOR EACH ROW
  WHEN (OLD.code IS DISTINCT FROM NEW.code) EXECUTE FUNCTION extra.noop();
ALTER TABLE extra.tickets DISABLE TRIGGER tickets_disabled;
CREATE TRIGGER tickets_replica AFTER DELETE ON extra.tickets FOR EACH STATEMENT EXECUTE FUNCTION extra.noop();
ALTER TABLE extra.tickets ENABLE REPLICA TRIGGER tickets_replica;
CREATE CONSTRAINT TRIGGER tickets_deferred AFTER INSERT ON extra.tickets DEFERRABLE INITIALLY DEFERRED
  FOR EACH ROW EXECUTE FUNCTION extra.noop();
CREATE TRIGGER measurements_row AFTER INSERT ON extra.measurements FOR EACH ROW EXECUTE FUNCTION extra.noop();
${
  major >= 14
    ? `-- SQL-standard bodies are parsed at creation: the function needs its table, the view needs the function.
CREATE FUNCTION extra.ticket_count() RETURNS bigint LANGUAGE sql STABLE BEGIN ATOMIC SELECT count(*) FROM extra.tickets; END;
CREATE VIEW extra.ticket_summary AS SELECT extra.ticket_count() AS n;`
    : ''
}
${
  major >= 15
    ? `CREATE TABLE extra.nulls_not_distinct (a int, b int, UNIQUE NULLS NOT DISTINCT (a, b));
CREATE VIEW extra.invoker_view WITH (security_invoker = true) AS SELECT id FROM extra.tickets;`
    : ''
}
`;
}

const USER = `n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast', 'pgferry') AND n.nspname NOT LIKE 'pg\\_%'`;
const NOT_MEMBER = (classid: string, oid: string) =>
  `NOT EXISTS (SELECT 1 FROM pg_depend e WHERE e.classid = '${classid}'::regclass AND e.objid = ${oid} AND e.deptype = 'e')`;
const REL = `format('%I.%I', n.nspname, c.relname)`;

/**
 * PostgreSQL 16 stopped qualifying column references with their relation when a query reads only
 * one (a view prints `tickets.code` on 15 and `code` on 17): across that boundary view definitions
 * are compared without relation qualifiers (schema qualifiers stay).
 */
const unqualified = (def: string) => def.replace(/\b(?!(?:shop|extra|aaa|aaa_first|fid|public)\.)[a-z_][a-z0-9_]*\.(?=[a-z_"])/g, '');

/**
 * The user part of a database's catalog, read with the server's deparsers (pgferry's control
 * schema and extension members left out), for comparing a source with its target.
 */
export async function catalogSnapshot(client: pg.Client, options: { unqualifiedViews?: boolean; olderThan14?: boolean } = {}): Promise<Record<string, unknown[]>> {
  await client.query(`SET search_path = ''`);
  const read = async (sql: string) => (await client.query(sql)).rows;
  return {
    relations: await read(
      `SELECT ${REL} AS rel, c.relkind, c.relpersistence, c.reloptions, c.relreplident,
              CASE WHEN c.relkind = 'p' THEN pg_get_partkeydef(c.oid) END AS partition_key,
              pg_get_expr(c.relpartbound, c.oid) AS partition_bound,
              (SELECT string_agg(format('%I.%I', pn.nspname, p.relname), ', ' ORDER BY i.inhseqno)
                 FROM pg_inherits i JOIN pg_class p ON p.oid = i.inhparent JOIN pg_namespace pn ON pn.oid = p.relnamespace
                WHERE i.inhrelid = c.oid AND c.relkind IN ('r', 'p')) AS parents
         FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE c.relkind IN ('r', 'p', 'v', 'm', 'S', 'c', 'f') AND ${USER} AND ${NOT_MEMBER('pg_class', 'c.oid')}
        ORDER BY 1`,
    ),
    // From PostgreSQL 17 a partition shares its parent's identity column; before, only the parent
    // had it. That difference is the server's, not the migration's: partitions' identity is left out.
    columns: await read(
      `SELECT ${REL} AS rel, a.attnum, a.attname, format_type(a.atttypid, a.atttypmod) AS type,
              pg_get_expr(d.adbin, d.adrelid) AS default_expr, a.attnotnull, a.attgenerated,
              CASE WHEN c.relispartition THEN '' ELSE a.attidentity END AS identity,
              CASE WHEN a.attcollation <> 0 THEN (SELECT collname FROM pg_collation WHERE oid = a.attcollation) END AS collation,
              a.attstorage, nullif(a.attstattarget, -1)::int AS statistics, a.attislocal
         FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace
         LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
        WHERE c.relkind IN ('r', 'p', 'v', 'm', 'c', 'f') AND a.attnum > 0 AND NOT a.attisdropped
          AND ${USER} AND ${NOT_MEMBER('pg_class', 'c.oid')}
        ORDER BY 1, 2`,
    ),
    // PostgreSQL 18 records NOT NULL as constraints too; the columns' attnotnull covers them. The
    // server names the clones of a foreign key to a partitioned table itself (fkey1 up to 17,
    // fkey_1 from 18): a clone is shown by its parent's name.
    constraints: await read(
      `SELECT CASE WHEN c.oid IS NOT NULL THEN ${REL} ELSE format_type(k.contypid, NULL) END AS owner,
              CASE WHEN k.conparentid <> 0 THEN 'clone of ' || (
                WITH RECURSIVE up AS (SELECT k.conparentid AS oid
                                      UNION ALL SELECT p.conparentid FROM pg_constraint p JOIN up ON p.oid = up.oid WHERE p.conparentid <> 0)
                SELECT p.conname FROM pg_constraint p WHERE p.oid IN (SELECT oid FROM up) AND p.conparentid = 0)
              ELSE k.conname END AS conname,
              k.contype, pg_get_constraintdef(k.oid) AS def, k.convalidated, k.conislocal
         FROM pg_constraint k JOIN pg_namespace n ON n.oid = k.connamespace
         LEFT JOIN pg_class c ON c.oid = k.conrelid
        WHERE k.contype <> 'n' AND ${USER} ORDER BY 1, 2, 4`,
    ),
    indexes: await read(
      `SELECT ${REL} AS rel, pg_get_indexdef(x.indexrelid) AS def, x.indisclustered, x.indisreplident, x.indisvalid
         FROM pg_index x JOIN pg_class c ON c.oid = x.indexrelid JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE ${USER} ORDER BY 1`,
    ),
    // A partition's clone of its parent's trigger is internal up to PostgreSQL 14 and not from 15:
    // only the triggers users create are compared.
    triggers: await read(
      `SELECT ${REL} AS rel, t.tgname, pg_get_triggerdef(t.oid) AS def, t.tgenabled
         FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE NOT t.tgisinternal AND t.tgparentid = 0 AND ${USER} ORDER BY 1, 2`,
    ),
    views: (
      await read(
        `SELECT ${REL} AS rel, pg_get_viewdef(c.oid) AS def
           FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
          WHERE c.relkind IN ('v', 'm') AND ${USER} AND ${NOT_MEMBER('pg_class', 'c.oid')} ORDER BY 1`,
      )
    ).map((v) => (options.unqualifiedViews ? { ...v, def: unqualified(v.def) } : v)),
    sequences: await read(
      `SELECT s.schemaname, s.sequencename, s.data_type::text, s.start_value, s.min_value, s.max_value, s.increment_by, s.cycle, s.cache_size,
              (SELECT format('%s %s', d.deptype, pg_describe_object(d.refclassid, d.refobjid, d.refobjsubid)) FROM pg_depend d
                WHERE d.classid = 'pg_class'::regclass AND d.objid = format('%I.%I', s.schemaname, s.sequencename)::regclass
                  AND d.deptype IN ('a', 'i')) AS owner
         FROM pg_sequences s WHERE s.schemaname NOT IN ('pgferry') ORDER BY 1, 2`,
    ),
    types: await read(
      `SELECT format('%I.%I', n.nspname, t.typname) AS type, t.typtype,
              (SELECT array_agg(e.enumlabel ORDER BY e.enumsortorder) FROM pg_enum e WHERE e.enumtypid = t.oid) AS labels,
              format_type(t.typbasetype, t.typtypmod) AS base, t.typnotnull, pg_get_expr(t.typdefaultbin, 0) AS default_expr,
              (SELECT collname FROM pg_collation WHERE oid = t.typcollation) AS collation
         FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
        WHERE t.typtype IN ('e', 'd', 'r', 'c') AND ${USER} AND ${NOT_MEMBER('pg_type', 't.oid')}
          AND (t.typtype <> 'c' OR (SELECT relkind FROM pg_class WHERE oid = t.typrelid) = 'c')
        ORDER BY 1`,
    ),
    // Functions users create: a range type's constructors come with it (and from PostgreSQL 14 so
    // do a multirange type and its constructors). PostgreSQL 14 prints a procedure's input
    // arguments with an explicit IN: older sources are compared without it.
    functions: (
      await read(
        `SELECT format('%I.%I(%s)', n.nspname, p.proname, oidvectortypes(p.proargtypes)) AS identity,
                pg_get_functiondef(p.oid) AS def
           FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
          WHERE p.prokind <> 'a' AND ${USER} AND ${NOT_MEMBER('pg_proc', 'p.oid')}
            AND NOT EXISTS (SELECT 1 FROM pg_depend i WHERE i.classid = 'pg_proc'::regclass AND i.objid = p.oid AND i.deptype = 'i')
          ORDER BY 1`,
      )
    ).map((f) => (options.olderThan14 ? { ...f, def: f.def.replace(/^(CREATE OR REPLACE PROCEDURE [^\n]*)/, (line: string) => line.replace(/([(,] ?)IN /g, '$1')) } : f)),
    collations: await read(
      `SELECT format('%I.%I', n.nspname, co.collname) AS collation, co.collprovider, co.collcollate, co.collctype, co.collisdeterministic
         FROM pg_collation co JOIN pg_namespace n ON n.oid = co.collnamespace WHERE ${USER} ORDER BY 1`,
    ),
    extensions: await read(`SELECT x.extname, n.nspname FROM pg_extension x JOIN pg_namespace n ON n.oid = x.extnamespace ORDER BY 1`),
  };
}

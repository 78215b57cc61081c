/**
 * A source schema with the pre-data kinds beyond tables, views and types (aggregates, operators,
 * operator classes and families, casts, conversions, text search objects), typed tables,
 * partitions and inheritance children with their own column order, a NOT VALID domain check
 * its rows violate, and dependency chains through all of them. Runs on PostgreSQL 13 and later.
 */
import type pg from 'pg';

/** The objects; all of them in schemas `kinds` and `kinds_other` (a cast between types of the latter). */
export const KINDS_SCHEMA_SQL = `
CREATE SCHEMA kinds;
CREATE FUNCTION kinds.int_eq(int, int) RETURNS boolean LANGUAGE sql IMMUTABLE AS 'SELECT $1 = $2';
CREATE FUNCTION kinds.int_ne(int, int) RETURNS boolean LANGUAGE sql IMMUTABLE AS 'SELECT $1 <> $2';
CREATE FUNCTION kinds.int_lt(int, int) RETURNS boolean LANGUAGE sql IMMUTABLE AS 'SELECT $1 < $2';
CREATE FUNCTION kinds.int_cmp(int, int) RETURNS int LANGUAGE sql IMMUTABLE
  AS 'SELECT CASE WHEN $1 < $2 THEN -1 WHEN $1 > $2 THEN 1 ELSE 0 END';
CREATE FUNCTION kinds.negate(int) RETURNS int LANGUAGE sql IMMUTABLE AS 'SELECT -$1';

-- Operators: a commutator/negator pair (each names the other), a prefix one, and one that only a class uses.
CREATE OPERATOR kinds.=== (FUNCTION = kinds.int_eq, LEFTARG = int, RIGHTARG = int, COMMUTATOR = OPERATOR(kinds.===),
  NEGATOR = OPERATOR(kinds.!==), RESTRICT = eqsel, JOIN = eqjoinsel, HASHES, MERGES);
CREATE OPERATOR kinds.!== (FUNCTION = kinds.int_ne, LEFTARG = int, RIGHTARG = int, COMMUTATOR = OPERATOR(kinds.!==),
  NEGATOR = OPERATOR(kinds.===), RESTRICT = neqsel, JOIN = neqjoinsel);
CREATE OPERATOR kinds.~~~ (FUNCTION = kinds.negate, RIGHTARG = int);
CREATE OPERATOR kinds.<<< (FUNCTION = kinds.int_lt, LEFTARG = int, RIGHTARG = int);

-- Operator families and classes: an explicit family with a loose member, an implicit one, STORAGE, FOR ORDER BY.
CREATE OPERATOR FAMILY kinds.int_fam USING btree;
CREATE OPERATOR CLASS kinds.int_ops FOR TYPE int USING btree FAMILY kinds.int_fam AS
  OPERATOR 1 kinds.<<<, OPERATOR 2 <=, OPERATOR 3 kinds.===, OPERATOR 4 >=, OPERATOR 5 >, FUNCTION 1 kinds.int_cmp(int, int);
ALTER OPERATOR FAMILY kinds.int_fam USING btree ADD OPERATOR 1 <(int, bigint), FUNCTION 1 (int, bigint) btint48cmp(int, bigint);
CREATE OPERATOR CLASS kinds.int_hash_ops FOR TYPE int USING hash AS OPERATOR 1 kinds.===, FUNCTION 1 hashint4(int);
CREATE OPERATOR CLASS kinds.int_array_ops FOR TYPE int[] USING gin AS
  OPERATOR 1 &&(anyarray, anyarray), OPERATOR 2 @>(anyarray, anyarray),
  FUNCTION 1 btint4cmp(int, int), FUNCTION 2 ginarrayextract(anyarray, internal, internal),
  FUNCTION 3 ginqueryarrayextract(anyarray, internal, smallint, internal, internal, internal, internal),
  FUNCTION 4 ginarrayconsistent(internal, smallint, anyarray, integer, internal, internal, internal, internal),
  STORAGE int;
CREATE OPERATOR CLASS kinds.box_ops FOR TYPE box USING gist AS
  OPERATOR 3 &&, OPERATOR 15 <->(box, point) FOR ORDER BY float_ops,
  FUNCTION 1 gist_box_consistent(internal, box, smallint, oid, internal), FUNCTION 2 gist_box_union(internal, internal),
  FUNCTION 5 gist_box_penalty(internal, internal, internal), FUNCTION 6 gist_box_picksplit(internal, internal),
  FUNCTION 7 gist_box_same(box, box, internal), FUNCTION 8 gist_box_distance(internal, box, smallint, oid, internal);

-- Aggregates: pagila's group_concat, every option of a moving aggregate, a serialized one, a sort operator, ordered-set, hypothetical, (*).
CREATE FUNCTION kinds._group_concat(text, text) RETURNS text LANGUAGE sql IMMUTABLE
  AS $$ SELECT CASE WHEN $2 IS NULL THEN $1 WHEN $1 IS NULL THEN $2 ELSE $1 || ', ' || $2 END $$;
CREATE AGGREGATE kinds.group_concat(text) (SFUNC = kinds._group_concat, STYPE = text);
CREATE AGGREGATE kinds.my_avg(int) (SFUNC = int4_avg_accum, STYPE = int8[], SSPACE = 16, INITCOND = '{0,0}',
  FINALFUNC = int8_avg, FINALFUNC_MODIFY = READ_ONLY, COMBINEFUNC = int4_avg_combine,
  MSFUNC = int4_avg_accum, MINVFUNC = int4_avg_accum_inv, MSTYPE = int8[], MSSPACE = 16, MINITCOND = '{0,0}', MFINALFUNC = int8_avg,
  PARALLEL = SAFE);
CREATE AGGREGATE kinds.my_big_avg(bigint) (SFUNC = int8_avg_accum, STYPE = internal, SSPACE = 48, FINALFUNC = numeric_poly_avg,
  COMBINEFUNC = int8_avg_combine, SERIALFUNC = int8_avg_serialize, DESERIALFUNC = int8_avg_deserialize, PARALLEL = RESTRICTED);
CREATE AGGREGATE kinds.my_min(int) (SFUNC = int4smaller, STYPE = int, SORTOP = OPERATOR(kinds.<<<), COMBINEFUNC = int4smaller);
CREATE AGGREGATE kinds.my_median(float8 ORDER BY float8) (SFUNC = ordered_set_transition, STYPE = internal,
  FINALFUNC = percentile_cont_float8_final, FINALFUNC_MODIFY = SHAREABLE);
CREATE AGGREGATE kinds.my_rank(VARIADIC "any" ORDER BY VARIADIC "any") (SFUNC = ordered_set_transition_multi, STYPE = internal,
  FINALFUNC = rank_final, FINALFUNC_EXTRA, FINALFUNC_MODIFY = READ_WRITE, HYPOTHETICAL);
CREATE AGGREGATE kinds.my_count(*) (SFUNC = int8inc, STYPE = int8, INITCOND = '0');

-- Casts: with a function (assignment), with inout (implicit), without function (a view uses it, with no dependency on it).
CREATE TYPE kinds.mood AS ENUM ('sad', 'ok', 'happy');
CREATE FUNCTION kinds.mood_rank(kinds.mood) RETURNS int LANGUAGE sql IMMUTABLE
  AS $$ SELECT CASE $1 WHEN 'sad' THEN 0 WHEN 'ok' THEN 1 ELSE 2 END $$;
CREATE CAST (kinds.mood AS int) WITH FUNCTION kinds.mood_rank(kinds.mood) AS ASSIGNMENT;
CREATE CAST (kinds.mood AS varchar) WITH INOUT AS IMPLICIT;
-- (PostgreSQL 18 refuses WITHOUT FUNCTION for a range, enum, composite or domain type: this one is between built-in types.)
CREATE CAST (xid AS int) WITHOUT FUNCTION;
CREATE TYPE kinds.span AS RANGE (SUBTYPE = int);

-- Text search: a template, a dictionary with options, a parser, a configuration with mappings to several dictionaries.
CREATE TEXT SEARCH TEMPLATE kinds.simple_tmpl (INIT = dsimple_init, LEXIZE = dsimple_lexize);
CREATE TEXT SEARCH DICTIONARY kinds.simple_dict (TEMPLATE = kinds.simple_tmpl, STOPWORDS = english, ACCEPT = false);
CREATE TEXT SEARCH PARSER kinds.parser (START = prsd_start, GETTOKEN = prsd_nexttoken, END = prsd_end, LEXTYPES = prsd_lextype,
  HEADLINE = prsd_headline);
CREATE TEXT SEARCH CONFIGURATION kinds.cfg (PARSER = kinds.parser);
ALTER TEXT SEARCH CONFIGURATION kinds.cfg ADD MAPPING FOR asciiword, word WITH kinds.simple_dict, english_stem;
ALTER TEXT SEARCH CONFIGURATION kinds.cfg ADD MAPPING FOR int, uint WITH simple;
CREATE CONVERSION kinds.latin1_to_utf8 FOR 'LATIN1' TO 'UTF8' FROM iso8859_1_to_utf8;

-- Domains: a check using an operator; a NOT VALID check that the rows below violate.
CREATE DOMAIN kinds.nonzero AS int CHECK (VALUE OPERATOR(kinds.!==) 0);
CREATE DOMAIN kinds.small AS int;

-- Tables using them: a default and a check with operators, a generated column and an index on a text search configuration,
-- indexes with the operator classes, a column of a domain with an operator.
CREATE TABLE kinds.docs (
  id int PRIMARY KEY,
  body text,
  mood kinds.mood NOT NULL DEFAULT 'ok',
  tags int[],
  area box,
  size kinds.small,
  span kinds.span,
  weight kinds.nonzero DEFAULT (OPERATOR(kinds.~~~) 1),
  tsv tsvector GENERATED ALWAYS AS (to_tsvector('kinds.cfg'::regconfig, body)) STORED,
  CONSTRAINT docs_id_check CHECK (id OPERATOR(kinds.!==) -1)
);
CREATE INDEX docs_fts ON kinds.docs USING gin (to_tsvector('kinds.cfg'::regconfig, body));
CREATE INDEX docs_id_ops ON kinds.docs (id kinds.int_ops);
CREATE INDEX docs_id_hash ON kinds.docs USING hash (id kinds.int_hash_ops);
CREATE INDEX docs_tags ON kinds.docs USING gin (tags kinds.int_array_ops);
CREATE INDEX docs_area ON kinds.docs USING gist (area kinds.box_ops);

-- Views over aggregates (a chain), casts (with and without a function) and operators.
CREATE TABLE kinds.tags (item int, tag text);
CREATE VIEW kinds.tags_by_item AS SELECT item, kinds.group_concat(tag) AS tags, kinds.my_count(*) AS n FROM kinds.tags GROUP BY item;
CREATE VIEW kinds.tag_summary AS SELECT count(*) AS items, kinds.my_avg(n::int) AS average FROM kinds.tags_by_item;
CREATE VIEW kinds.doc_moods AS
  SELECT id, mood::int AS mood_rank, mood::varchar AS mood_text, OPERATOR(kinds.~~~) id AS negated,
         kinds.my_min(id) OVER () AS first_id
    FROM kinds.docs WHERE id OPERATOR(kinds.===) id;
CREATE VIEW kinds.doc_versions AS SELECT id, xmin::int AS version FROM kinds.docs;
CREATE VIEW kinds.doc_rank AS
  SELECT kinds.my_rank(2) WITHIN GROUP (ORDER BY id) AS rank, kinds.my_median(0.5) WITHIN GROUP (ORDER BY id::float8) AS median,
         kinds.my_big_avg(id) AS average
    FROM kinds.docs;

-- A partition attached with its own column order; an inheritance child added with INHERIT, one created with INHERITS.
CREATE TABLE kinds.events (id int NOT NULL, at date NOT NULL, note text) PARTITION BY RANGE (at);
CREATE TABLE kinds.events_2025 PARTITION OF kinds.events FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');
CREATE TABLE kinds.events_2026 (note text, at date NOT NULL, id int NOT NULL);
ALTER TABLE kinds.events ATTACH PARTITION kinds.events_2026 FOR VALUES FROM ('2026-01-01') TO ('2027-01-01');
CREATE TABLE kinds.base (id int CHECK (id > 0), name text);
CREATE TABLE kinds.base_added (name text, extra int, id int CONSTRAINT base_id_check CHECK (id > 0));
ALTER TABLE kinds.base_added INHERIT kinds.base;
CREATE TABLE kinds.base_created (more text) INHERITS (kinds.base);

-- A typed table, with per-column options.
CREATE TYPE kinds.person AS (name text, age int, mood kinds.mood);
CREATE TABLE kinds.people OF kinds.person (name WITH OPTIONS NOT NULL, age WITH OPTIONS DEFAULT 0 CHECK (age >= 0));

-- A cast between types of another schema, and a type of that schema a selected table uses.
CREATE SCHEMA kinds_other;
CREATE TYPE kinds_other.flag AS ENUM ('on', 'off');
CREATE TYPE kinds_other.switch AS ENUM ('up', 'down');
CREATE CAST (kinds_other.flag AS kinds_other.switch) WITH INOUT;
CREATE TYPE kinds_other.level AS ENUM ('low', 'high');
CREATE CAST (kinds_other.level AS text) WITH INOUT;
CREATE TABLE kinds.settings (id int PRIMARY KEY, level kinds_other.level);
`;

/** Rows, run on the source and on the target between pre-data and post-data (as the load would). */
export const KINDS_ROWS_SQL = `
INSERT INTO kinds.docs (id, body, mood, tags, area, size) VALUES
  (1, 'the quick brown fox', 'happy', '{1,2}', '((0,0),(1,1))', 500),
  (2, 'jumps over the lazy dog', 'sad', '{3}', '((2,2),(3,3))', 5);
INSERT INTO kinds.tags VALUES (1, 'a'), (1, 'b'), (2, 'c');
INSERT INTO kinds.events VALUES (1, '2025-05-01', 'x'), (2, '2026-05-01', 'y');
INSERT INTO kinds.base_added VALUES ('n', 1, 1);
INSERT INTO kinds.people VALUES ('ann', 30, 'ok');
INSERT INTO kinds.settings VALUES (1, 'high');
`;

/** After the rows: a check that the existing rows violate, added NOT VALID. */
export const KINDS_AFTER_ROWS_SQL = `ALTER DOMAIN kinds.small ADD CONSTRAINT small_limit CHECK (VALUE < 100) NOT VALID;`;

const KINDS = `IN (SELECT oid FROM pg_namespace WHERE nspname IN ('kinds', 'kinds_other'))`;

/** The objects of these kinds in a database, read independently of pgferry's deparsing, for comparing a source with its target. */
export async function kindsSnapshot(client: pg.Client): Promise<Record<string, unknown[]>> {
  await client.query(`SET search_path = ''`);
  const read = async (sql: string) => (await client.query(sql)).rows;
  return {
    aggregates: await read(
      `SELECT a.aggfnoid::regprocedure::text AS aggregate, pg_get_function_arguments(a.aggfnoid) AS arguments, a.aggkind, a.aggnumdirectargs,
              a.aggtransfn::text, a.aggfinalfn::text, a.aggcombinefn::text, a.aggserialfn::text, a.aggdeserialfn::text,
              a.aggmtransfn::text, a.aggminvtransfn::text, a.aggmfinalfn::text, a.aggfinalextra, a.aggmfinalextra,
              a.aggfinalmodify, a.aggmfinalmodify, a.aggsortop::regoperator::text AS sortop, format_type(a.aggtranstype, NULL) AS stype,
              a.aggtransspace, format_type(nullif(a.aggmtranstype, 0), NULL) AS mstype, a.aggmtransspace, a.agginitval, a.aggminitval,
              p.proparallel
         FROM pg_aggregate a JOIN pg_proc p ON p.oid = a.aggfnoid WHERE p.pronamespace ${KINDS} ORDER BY 1`,
    ),
    operators: await read(
      `SELECT o.oid::regoperator::text AS operator, o.oprkind, o.oprcanmerge, o.oprcanhash, o.oprcode::text, o.oprrest::text,
              o.oprjoin::text, o.oprcom::regoperator::text AS commutator, o.oprnegate::regoperator::text AS negator,
              format_type(o.oprresult, NULL) AS result
         FROM pg_operator o WHERE o.oprnamespace ${KINDS} ORDER BY 1`,
    ),
    families: await read(
      `SELECT f.opfname, am.amname FROM pg_opfamily f JOIN pg_am am ON am.oid = f.opfmethod WHERE f.opfnamespace ${KINDS} ORDER BY 1, 2`,
    ),
    classes: await read(
      `SELECT c.opcname, am.amname, c.opcdefault, f.opfname, format_type(c.opcintype, NULL) AS type, format_type(nullif(c.opckeytype, 0), NULL) AS storage
         FROM pg_opclass c JOIN pg_am am ON am.oid = c.opcmethod JOIN pg_opfamily f ON f.oid = c.opcfamily
        WHERE c.opcnamespace ${KINDS} ORDER BY 1, 2`,
    ),
    members: await read(
      `SELECT f.opfname, 'operator' AS member, o.amopstrategy AS number, o.amopopr::regoperator::text AS item, o.amoppurpose::text AS purpose,
              (SELECT opfname FROM pg_opfamily WHERE oid = o.amopsortfamily) AS sort_family,
              format_type(o.amoplefttype, NULL) AS lefttype, format_type(o.amoprighttype, NULL) AS righttype,
              (SELECT string_agg(pg_describe_object(d.refclassid, d.refobjid, 0) || ' ' || d.deptype::text, ', ' ORDER BY 1) FROM pg_depend d
                WHERE d.classid = 'pg_amop'::regclass AND d.objid = o.oid AND d.refclassid IN ('pg_opclass'::regclass, 'pg_opfamily'::regclass)) AS owner
         FROM pg_amop o JOIN pg_opfamily f ON f.oid = o.amopfamily WHERE f.opfnamespace ${KINDS}
       UNION ALL
       SELECT f.opfname, 'function', p.amprocnum, p.amproc::regprocedure::text, NULL, NULL,
              format_type(p.amproclefttype, NULL), format_type(p.amprocrighttype, NULL),
              (SELECT string_agg(pg_describe_object(d.refclassid, d.refobjid, 0) || ' ' || d.deptype::text, ', ' ORDER BY 1) FROM pg_depend d
                WHERE d.classid = 'pg_amproc'::regclass AND d.objid = p.oid AND d.refclassid IN ('pg_opclass'::regclass, 'pg_opfamily'::regclass))
         FROM pg_amproc p JOIN pg_opfamily f ON f.oid = p.amprocfamily WHERE f.opfnamespace ${KINDS}
        ORDER BY 1, 2, 3, 4`,
    ),
    casts: await read(
      `SELECT format_type(c.castsource, NULL) AS source, format_type(c.casttarget, NULL) AS target, c.castfunc::regprocedure::text AS function,
              c.castcontext, c.castmethod
         FROM pg_cast c WHERE c.oid >= 16384
          AND NOT EXISTS (SELECT 1 FROM pg_depend i WHERE i.classid = 'pg_cast'::regclass AND i.objid = c.oid AND i.deptype = 'i')
        ORDER BY 1, 2`,
    ),
    textSearch: await read(
      `SELECT 'template' AS kind, tmplname AS name, concat_ws(' ', tmplinit::text, tmpllexize::text) AS def FROM pg_ts_template WHERE tmplnamespace ${KINDS}
       UNION ALL SELECT 'parser', prsname, concat_ws(' ', prsstart::text, prstoken::text, prsend::text, prslextype::text, prsheadline::text)
         FROM pg_ts_parser WHERE prsnamespace ${KINDS}
       UNION ALL SELECT 'dictionary', dictname, concat_ws(' ', (SELECT tmplname FROM pg_ts_template WHERE oid = dicttemplate), dictinitoption)
         FROM pg_ts_dict WHERE dictnamespace ${KINDS}
       UNION ALL SELECT 'configuration', c.cfgname, (SELECT prsname FROM pg_ts_parser WHERE oid = c.cfgparser) || ': ' ||
              (SELECT string_agg(t.alias || '=' || m.mapdict::regdictionary::text, ' ' ORDER BY m.maptokentype, m.mapseqno)
                 FROM pg_ts_config_map m JOIN ts_token_type(c.cfgparser) t ON t.tokid = m.maptokentype WHERE m.mapcfg = c.oid)
         FROM pg_ts_config c WHERE c.cfgnamespace ${KINDS}
       UNION ALL SELECT 'conversion', conname, concat_ws(' ', pg_encoding_to_char(conforencoding), pg_encoding_to_char(contoencoding), condefault)
         FROM pg_conversion WHERE connamespace ${KINDS}
       ORDER BY 1, 2`,
    ),
    tables: await read(
      `SELECT c.relname, format_type(nullif(c.reloftype, 0), NULL) AS of_type,
              string_agg(format('%s local=%s inherited=%s', a.attname, a.attislocal, a.attinhcount), ', ' ORDER BY a.attnum) AS columns
         FROM pg_class c JOIN pg_attribute a ON a.attrelid = c.oid
        WHERE c.relnamespace ${KINDS} AND c.relkind IN ('r', 'p') AND a.attnum > 0 AND NOT a.attisdropped
        GROUP BY c.oid, c.relname, c.reloftype ORDER BY 1`,
    ),
  };
}

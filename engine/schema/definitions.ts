/**
 * Reads pre-data objects from the source catalog and turns them into DDL with the server's own
 * deparsers. Must run inside `readSource` (empty search_path: every deparsed name is qualified).
 * Identities are `format('%I.%I')` strings: readable, and valid SQL for the target. Tables are
 * read in table-definitions.ts.
 */
import type pg from 'pg';
import { SYSTEM_SCHEMAS } from '../catalog/tables.js';

export type NodeKind =
  | 'collation'
  | 'type'
  | 'sequence'
  | 'function'
  | 'procedure'
  | 'aggregate'
  | 'operator'
  | 'operator family'
  | 'operator class'
  | 'cast'
  | 'conversion'
  | 'text search template'
  | 'text search parser'
  | 'text search dictionary'
  | 'text search configuration'
  | 'table'
  | 'view'
  | 'materialized view';

/**
 * One pre-data object: its dependency key (`rel:<oid>`, `type:<oid>`, `proc:<oid>`, `coll:<oid>`, `opr:`, `opf:`, `opc:`,
 * `cast:`, `conv:`, `tst:`, `tsp:`, `tsd:`, `tsc:`) and its DDL.
 */
export interface Node {
  key: string;
  kind: NodeKind;
  identity: string;
  schema: string;
  create: string[];
  /** Run after every object exists (a sequence's OWNED BY). */
  finish: string[];
  /** Why the object is not wanted by itself (a sync flag, its schema, its owner); it is still created when a wanted object needs it. */
  exclusion?: string;
  /** Materialized views: whether the source's is populated (refreshed in post-data). */
  populated?: boolean;
  /** Tables: the selected parent a partition or child was created from (notes on unselected parents). */
  note?: string;
  /** Wanted as soon as an object it references is (casts: they belong to no schema). */
  wantedWithRefs?: boolean;
  /** Domains: their NOT VALID checks, added in post-data once the rows they were never checked against are in. */
  notValidChecks?: { identity: string; sql: string }[];
}

export const USER_SCHEMA = (n: string) => `${n}.nspname <> ALL($1::text[]) AND ${n}.nspname NOT LIKE 'pg\\_%'`;
export const NOT_MEMBER = (classid: string, oid: string) =>
  `NOT EXISTS (SELECT 1 FROM pg_depend e WHERE e.classid = '${classid}'::regclass AND e.objid = ${oid} AND e.deptype = 'e')`;
export const COLLATION_NAME = (oid: string) =>
  `(SELECT format('%I.%I', cn.nspname, co.collname) FROM pg_collation co JOIN pg_namespace cn ON cn.oid = co.collnamespace WHERE co.oid = ${oid})`;

export interface UserSchema {
  name: string;
  identity: string;
}

export async function userSchemas(source: pg.Client): Promise<UserSchema[]> {
  const { rows } = await source.query<UserSchema>(
    `SELECT n.nspname AS name, quote_ident(n.nspname) AS identity FROM pg_namespace n
      WHERE ${USER_SCHEMA('n')} AND ${NOT_MEMBER('pg_namespace', 'n.oid')} ORDER BY n.nspname`,
    [SYSTEM_SCHEMAS],
  );
  return rows;
}

const literal = (text: string) => `'${text.replace(/'/g, "''")}'`;
const PROVIDERS: Record<string, string> = { c: 'libc', i: 'icu', b: 'builtin' };

/** Collations; their columns differ between versions (ICU and builtin locales), hence `to_jsonb`. */
export async function collationNodes(source: pg.Client): Promise<Node[]> {
  const { rows } = await source.query(
    `SELECT 'coll:' || co.oid AS key, n.nspname AS schema, format('%I.%I', n.nspname, co.collname) AS identity, to_jsonb(co) AS c
       FROM pg_collation co JOIN pg_namespace n ON n.oid = co.collnamespace
      WHERE ${USER_SCHEMA('n')} AND ${NOT_MEMBER('pg_collation', 'co.oid')} AND co.collprovider <> 'd'`,
    [SYSTEM_SCHEMAS],
  );
  return rows.map((row): Node => {
    const c = row.c;
    const options = [`provider = ${PROVIDERS[c.collprovider] ?? c.collprovider}`];
    if (c.collprovider === 'c') options.push(`lc_collate = ${literal(c.collcollate)}`, `lc_ctype = ${literal(c.collctype)}`);
    else options.push(`locale = ${literal(c.colllocale ?? c.colliculocale ?? c.collcollate)}`);
    if (c.collicurules) options.push(`rules = ${literal(c.collicurules)}`);
    if (c.collisdeterministic === false) options.push('deterministic = false');
    const create = [`CREATE COLLATION IF NOT EXISTS ${row.identity} (${options.join(', ')})`];
    return { key: row.key, kind: 'collation', identity: row.identity, schema: row.schema, create, finish: [] };
  });
}

export async function typeNodes(source: pg.Client, version: number): Promise<Node[]> {
  const multirange =
    version >= 140000
      ? `, 'MULTIRANGE_TYPE_NAME = ' || (SELECT format('%I.%I', mn.nspname, m.typname) FROM pg_type m JOIN pg_namespace mn ON mn.oid = m.typnamespace WHERE m.oid = r.rngmultitypid)`
      : '';
  const { rows } = await source.query(
    `SELECT 'type:' || t.oid AS key, n.nspname AS schema, format('%I.%I', n.nspname, t.typname) AS identity, t.typtype::text AS typtype,
            (SELECT string_agg(quote_literal(e.enumlabel), ', ' ORDER BY e.enumsortorder) FROM pg_enum e WHERE e.enumtypid = t.oid) AS labels,
            format_type(t.typbasetype, t.typtypmod) AS base,
            CASE WHEN t.typcollation <> 0 AND t.typcollation <> b.typcollation THEN ${COLLATION_NAME('t.typcollation')} END AS collation,
            pg_get_expr(t.typdefaultbin, 0) AS default_expr, t.typnotnull AS not_null,
            ARRAY(SELECT format('CONSTRAINT %I %s', k.conname, pg_get_constraintdef(k.oid)) FROM pg_constraint k
                   WHERE k.contypid = t.oid AND k.contype = 'c' AND k.convalidated ORDER BY k.conname) AS checks,
            ARRAY(SELECT format('%I.%I.%I', n.nspname, t.typname, k.conname) FROM pg_constraint k
                   WHERE k.contypid = t.oid AND k.contype = 'c' AND NOT k.convalidated ORDER BY k.conname) AS not_valid_names,
            ARRAY(SELECT format('CONSTRAINT %I %s', k.conname, pg_get_constraintdef(k.oid)) FROM pg_constraint k
                   WHERE k.contypid = t.oid AND k.contype = 'c' AND NOT k.convalidated ORDER BY k.conname) AS not_valid,
            (SELECT string_agg(format('%I %s', a.attname, format_type(a.atttypid, a.atttypmod))
                     || CASE WHEN a.attcollation <> at.typcollation THEN ' COLLATE ' || ${COLLATION_NAME('a.attcollation')} ELSE '' END,
                     ', ' ORDER BY a.attnum)
               FROM pg_attribute a JOIN pg_type at ON at.oid = a.atttypid
              WHERE a.attrelid = t.typrelid AND a.attnum > 0 AND NOT a.attisdropped) AS attributes,
            (SELECT concat_ws(', ', 'SUBTYPE = ' || format_type(r.rngsubtype, NULL),
                      'SUBTYPE_OPCLASS = ' || format('%I.%I', ocn.nspname, oc.opcname),
                      CASE WHEN r.rngcollation <> 0 AND r.rngcollation <> st.typcollation THEN 'COLLATION = ' || ${COLLATION_NAME('r.rngcollation')} END,
                      CASE WHEN r.rngcanonical <> 0 THEN 'CANONICAL = ' || r.rngcanonical::regproc::text END,
                      CASE WHEN r.rngsubdiff <> 0 THEN 'SUBTYPE_DIFF = ' || r.rngsubdiff::regproc::text END
                      ${multirange})
               FROM pg_range r JOIN pg_opclass oc ON oc.oid = r.rngsubopc JOIN pg_namespace ocn ON ocn.oid = oc.opcnamespace
               JOIN pg_type st ON st.oid = r.rngsubtype
              WHERE r.rngtypid = t.oid) AS range
       FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace LEFT JOIN pg_type b ON b.oid = t.typbasetype
      WHERE ${USER_SCHEMA('n')} AND ${NOT_MEMBER('pg_type', 't.oid')}
        AND (t.typtype IN ('e', 'd', 'r') OR (t.typtype = 'c' AND (SELECT relkind FROM pg_class WHERE oid = t.typrelid) = 'c'))`,
    [SYSTEM_SCHEMAS],
  );
  return rows.map((t): Node => {
    const id = t.identity as string;
    let create: string[];
    const notValidChecks = (t.not_valid as string[]).map((check, i) => ({ identity: t.not_valid_names[i], sql: `ALTER DOMAIN ${id} ADD ${check}` }));
    if (t.typtype === 'e') create = [`CREATE TYPE ${id} AS ENUM (${t.labels ?? ''})`];
    else if (t.typtype === 'c') create = [`CREATE TYPE ${id} AS (${t.attributes ?? ''})`];
    else if (t.typtype === 'r') create = [`CREATE TYPE ${id} AS RANGE (${t.range})`];
    else {
      let domain = `CREATE DOMAIN ${id} AS ${t.base}`;
      if (t.collation) domain += ` COLLATE ${t.collation}`;
      if (t.default_expr !== null) domain += ` DEFAULT ${t.default_expr}`;
      if (t.not_null) domain += ' NOT NULL';
      // Checks are added one by one, in constraint name order as on the source; NOT VALID ones after the load.
      create = [domain, ...(t.checks as string[]).map((check) => `ALTER DOMAIN ${id} ADD ${check}`)];
    }
    const node: Node = { key: t.key, kind: 'type', identity: id, schema: t.schema, create, finish: [] };
    if (notValidChecks.length) node.notValidChecks = notValidChecks;
    return node;
  });
}

export interface SequenceRow {
  oid: number;
  key: string;
  schema: string;
  identity: string;
  unlogged: boolean;
  type: string;
  start: string;
  increment: string;
  min: string;
  max: string;
  cache: string;
  cycle: boolean;
  /** 'i': an identity column's, 'a': OWNED BY a column, null: free-standing. */
  owner_deptype: 'i' | 'a' | null;
  owner_oid: number | null;
  owner_table: string | null;
  owner_column: string | null;
}

/** Every sequence in user schemas, identity ones included. */
export async function sequenceRows(source: pg.Client): Promise<SequenceRow[]> {
  const { rows } = await source.query<SequenceRow>(
    `SELECT c.oid::int AS oid, 'rel:' || c.oid AS key, n.nspname AS schema, format('%I.%I', n.nspname, c.relname) AS identity,
            c.relpersistence = 'u' AS unlogged, format_type(s.seqtypid, NULL) AS type,
            s.seqstart::text AS start, s.seqincrement::text AS increment, s.seqmin::text AS min, s.seqmax::text AS max,
            s.seqcache::text AS cache, s.seqcycle AS cycle,
            d.deptype::text AS owner_deptype, d.refobjid::int AS owner_oid,
            CASE WHEN t.oid IS NOT NULL THEN format('%I.%I', tn.nspname, t.relname) END AS owner_table,
            quote_ident(a.attname) AS owner_column
       FROM pg_sequence s JOIN pg_class c ON c.oid = s.seqrelid JOIN pg_namespace n ON n.oid = c.relnamespace
       LEFT JOIN pg_depend d ON d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.refclassid = 'pg_class'::regclass
                            AND d.deptype IN ('a', 'i')
       LEFT JOIN pg_class t ON t.oid = d.refobjid LEFT JOIN pg_namespace tn ON tn.oid = t.relnamespace
       LEFT JOIN pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid
      WHERE ${USER_SCHEMA('n')} AND ${NOT_MEMBER('pg_class', 'c.oid')}
      ORDER BY 4`,
    [SYSTEM_SCHEMAS],
  );
  return rows;
}

export function sequenceNode(s: SequenceRow, ownerSelected: boolean): Node {
  const options =
    `AS ${s.type} START WITH ${s.start} INCREMENT BY ${s.increment} MINVALUE ${s.min} MAXVALUE ${s.max} ` +
    `CACHE ${s.cache}${s.cycle ? ' CYCLE' : ' NO CYCLE'}`;
  return {
    key: s.key,
    kind: 'sequence',
    identity: s.identity,
    schema: s.schema,
    create: [`CREATE ${s.unlogged ? 'UNLOGGED ' : ''}SEQUENCE IF NOT EXISTS ${s.identity} ${options}`],
    finish: ownerSelected ? [`ALTER SEQUENCE ${s.identity} OWNED BY ${s.owner_table}.${s.owner_column}`] : [],
  };
}

export async function routineNodes(source: pg.Client): Promise<{ nodes: Node[]; aggregates: number }> {
  const { rows } = await source.query(
    `SELECT 'proc:' || p.oid AS key, n.nspname AS schema, p.prokind::text AS prokind,
            format('%I.%I(%s)', n.nspname, p.proname, oidvectortypes(p.proargtypes)) AS identity,
            CASE WHEN p.prokind <> 'a' THEN pg_get_functiondef(p.oid) END AS def
       FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
      WHERE ${USER_SCHEMA('n')} AND ${NOT_MEMBER('pg_proc', 'p.oid')}
        -- a range type's constructors come with the type (an internal dependency)
        AND NOT EXISTS (SELECT 1 FROM pg_depend i WHERE i.classid = 'pg_proc'::regclass AND i.objid = p.oid AND i.deptype = 'i')`,
    [SYSTEM_SCHEMAS],
  );
  // Aggregates are read with their own catalog (operators.ts).
  const nodes = rows
    .filter((p) => p.prokind !== 'a')
    .map(
      (p): Node => ({
        key: p.key,
        kind: p.prokind === 'p' ? 'procedure' : 'function',
        identity: p.identity,
        schema: p.schema,
        create: [p.def],
        finish: [],
      }),
    );
  return { nodes, aggregates: rows.length - nodes.length };
}

export async function viewNodes(source: pg.Client): Promise<Node[]> {
  const { rows } = await source.query(
    `SELECT 'rel:' || c.oid AS key, n.nspname AS schema, c.relkind::text AS relkind, format('%I.%I', n.nspname, c.relname) AS identity,
            pg_get_viewdef(c.oid) AS def, c.relispopulated AS populated,
            ARRAY(SELECT format('%s=%L', o.option_name, o.option_value) FROM pg_options_to_table(c.reloptions) o
                   WHERE o.option_name <> 'check_option') AS options,
            (SELECT upper(o.option_value) FROM pg_options_to_table(c.reloptions) o WHERE o.option_name = 'check_option') AS check_option,
            CASE WHEN am.amname <> 'heap' THEN quote_ident(am.amname) END AS access_method,
            ARRAY(SELECT format('ALTER VIEW %I.%I ALTER COLUMN %I SET DEFAULT %s', n.nspname, c.relname, a.attname, pg_get_expr(d.adbin, d.adrelid))
                    FROM pg_attrdef d JOIN pg_attribute a ON a.attrelid = d.adrelid AND a.attnum = d.adnum
                   WHERE d.adrelid = c.oid ORDER BY a.attnum) AS defaults
       FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace LEFT JOIN pg_am am ON am.oid = c.relam
      WHERE c.relkind IN ('v', 'm') AND ${USER_SCHEMA('n')} AND ${NOT_MEMBER('pg_class', 'c.oid')}`,
    [SYSTEM_SCHEMAS],
  );
  return rows.map((v): Node => {
    const def = (v.def as string).trim().replace(/;$/, '');
    const options = v.options.length ? ` WITH (${v.options.join(', ')})` : '';
    if (v.relkind === 'm') {
      const using = v.access_method ? ` USING ${v.access_method}` : '';
      return {
        key: v.key,
        kind: 'materialized view',
        identity: v.identity,
        schema: v.schema,
        create: [`CREATE MATERIALIZED VIEW IF NOT EXISTS ${v.identity}${using}${options} AS\n${def}\nWITH NO DATA`],
        finish: [],
        populated: v.populated,
      };
    }
    const check = v.check_option ? `\nWITH ${v.check_option} CHECK OPTION` : '';
    return {
      key: v.key,
      kind: 'view',
      identity: v.identity,
      schema: v.schema,
      create: [`CREATE OR REPLACE VIEW ${v.identity}${options} AS\n${def}${check}`, ...v.defaults],
      finish: [],
    };
  });
}

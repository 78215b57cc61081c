/**
 * Text search templates, parsers, dictionaries and configurations (with their mappings), and
 * conversions: read from the source catalog and deparsed to DDL. Same rules as definitions.ts.
 */
import type pg from 'pg';
import { SYSTEM_SCHEMAS } from '../catalog/tables.js';
import { NOT_MEMBER, USER_SCHEMA, type Node, type NodeKind } from './definitions.js';

const proc = (column: string) => `CASE WHEN ${column}::oid <> 0 THEN ${column}::regproc::text END`;

interface Catalog {
  kind: NodeKind;
  prefix: string;
  catalog: string;
  name: string;
  namespace: string;
  /** The object's DDL, as SQL over the row `x` (schema `n`); `identity` is its quoted name. */
  sql: (identity: string) => string;
  /** Statements after it, as a text[] expression. */
  more?: (identity: string) => string;
}

const CATALOGS: Catalog[] = [
  {
    kind: 'text search template',
    prefix: 'tst',
    catalog: 'pg_ts_template',
    name: 'tmplname',
    namespace: 'tmplnamespace',
    sql: (id) => `format('CREATE TEXT SEARCH TEMPLATE %s (%s)', ${id}, concat_ws(', ', 'INIT = ' || ${proc('x.tmplinit')}, 'LEXIZE = ' || ${proc('x.tmpllexize')}))`,
  },
  {
    kind: 'text search parser',
    prefix: 'tsp',
    catalog: 'pg_ts_parser',
    name: 'prsname',
    namespace: 'prsnamespace',
    sql: (id) =>
      `format('CREATE TEXT SEARCH PARSER %s (%s)', ${id}, concat_ws(', ', 'START = ' || ${proc('x.prsstart')}, 'GETTOKEN = ' || ${proc('x.prstoken')},
              'END = ' || ${proc('x.prsend')}, 'LEXTYPES = ' || ${proc('x.prslextype')}, 'HEADLINE = ' || ${proc('x.prsheadline')}))`,
  },
  {
    kind: 'text search dictionary',
    prefix: 'tsd',
    catalog: 'pg_ts_dict',
    name: 'dictname',
    namespace: 'dictnamespace',
    // dictinitoption is already written as a list of options (`stopwords = 'english'`).
    sql: (id) =>
      `format('CREATE TEXT SEARCH DICTIONARY %s (TEMPLATE = %s%s)', ${id},
              (SELECT format('%I.%I', tn.nspname, t.tmplname) FROM pg_ts_template t JOIN pg_namespace tn ON tn.oid = t.tmplnamespace WHERE t.oid = x.dicttemplate),
              ', ' || x.dictinitoption)`,
  },
  {
    kind: 'text search configuration',
    prefix: 'tsc',
    catalog: 'pg_ts_config',
    name: 'cfgname',
    namespace: 'cfgnamespace',
    sql: (id) =>
      `format('CREATE TEXT SEARCH CONFIGURATION %s (PARSER = %s)', ${id},
              (SELECT format('%I.%I', pn.nspname, p.prsname) FROM pg_ts_parser p JOIN pg_namespace pn ON pn.oid = p.prsnamespace WHERE p.oid = x.cfgparser))`,
    more: (id) =>
      `ARRAY(SELECT format('ALTER TEXT SEARCH CONFIGURATION %s ADD MAPPING FOR %I WITH %s', ${id}, t.alias,
                           string_agg(m.mapdict::regdictionary::text, ', ' ORDER BY m.mapseqno))
               FROM pg_ts_config_map m JOIN ts_token_type(x.cfgparser) t ON t.tokid = m.maptokentype
              WHERE m.mapcfg = x.oid GROUP BY m.maptokentype, t.alias ORDER BY m.maptokentype)`,
  },
  {
    kind: 'conversion',
    prefix: 'conv',
    catalog: 'pg_conversion',
    name: 'conname',
    namespace: 'connamespace',
    sql: (id) =>
      `format('CREATE %sCONVERSION %s FOR %L TO %L FROM %s', CASE WHEN x.condefault THEN 'DEFAULT ' ELSE '' END, ${id},
              pg_encoding_to_char(x.conforencoding), pg_encoding_to_char(x.contoencoding), x.conproc::regproc::text)`,
  },
];

const identityOf = (c: Catalog) => `format('%I.%I', n.nspname, x.${c.name})`;

/** Text search objects and conversions of the user schemas, each kind with its own key prefix (`tsc:<oid>`…). */
export async function textSearchNodes(source: pg.Client): Promise<Node[]> {
  const nodes: Node[] = [];
  for (const c of CATALOGS) {
    const { rows } = await source.query<{ key: string; schema: string; identity: string; sql: string; more: string[] }>(
      `SELECT '${c.prefix}:' || x.oid AS key, n.nspname AS schema, ${identityOf(c)} AS identity,
              ${c.sql(identityOf(c))} AS sql, ${c.more ? c.more(identityOf(c)) : `'{}'::text[]`} AS more
         FROM ${c.catalog} x JOIN pg_namespace n ON n.oid = x.${c.namespace}
        WHERE ${USER_SCHEMA('n')} AND ${NOT_MEMBER(c.catalog, 'x.oid')}`,
      [SYSTEM_SCHEMAS],
    );
    for (const r of rows) nodes.push({ key: r.key, kind: c.kind, identity: r.identity, schema: r.schema, create: [r.sql, ...r.more], finish: [] });
  }
  return nodes;
}

/** The text search objects and conversions on a database, as `<kind> <identity>` (to find what a target already has). */
export const TEXT_SEARCH_EXISTING = CATALOGS.map(
  (c) => `SELECT '${c.kind} ' || ${identityOf(c)} FROM ${c.catalog} x JOIN pg_namespace n ON n.oid = x.${c.namespace}`,
).join('\n     UNION ALL ');

/** pg_depend's catalogs of these kinds, mapped to their node keys (for dependencies.ts). */
export const TEXT_SEARCH_OBJECTS = CATALOGS.map(
  (c) => `SELECT '${c.catalog}'::regclass, oid, '${c.prefix}:' || oid, NULL FROM ${c.catalog} WHERE oid >= 16384`,
).join('\n       UNION ALL ');

/**
 * The catalog oracle of the fidelity tests (issue 13), for pairs pg_dump 15 cannot read: the
 * parts of catalogSnapshot plus every kind the fidelity fixture has (aggregates, operators,
 * operator classes and families, casts, text search objects, extended statistics, policies and
 * row-level security, rules, typed tables, ranges, column and TOAST options, index column
 * statistics, owners, privileges, default privileges, comments, materialized views' state), read
 * with names rather than OIDs and normalized where two majors print the same thing differently.
 */
import type pg from 'pg';
import { lineDifferences } from './fidelity.js';
import { catalogSnapshot } from './schema-fixtures.js';

const USER = `n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast', 'pgferry', 'pgferry_capture') AND n.nspname NOT LIKE 'pg\\_%'`;
const REL = `format('%I.%I', n.nspname, c.relname)`;
/** Not made by the server along with another object (a range type's constructors, from 14 its multirange's). */
const NOT_INTERNAL = (catalog: string, oid: string) =>
  `NOT EXISTS (SELECT 1 FROM pg_depend i WHERE i.classid = '${catalog}'::regclass AND i.objid = ${oid} AND i.deptype = 'i')`;

/**
 * An ACL as "grantee:privilege[*]" items, sorted (kind: the SQL of acldefault's object type); the object's owner shown as <owner> (public's
 * owner is postgres up to 14 and pg_database_owner from 15), NULL read as the default ACL. The
 * owner's own MAINTAIN (implicit from 17) is left out.
 */
const aclItems = (acl: string, owner: string, kind: string) =>
  `(SELECT string_agg(item, ',' ORDER BY item) FROM (
      SELECT format('%s:%s%s', CASE WHEN e.grantee = 0 THEN 'PUBLIC' WHEN e.grantee = ${owner} THEN '<owner>' ELSE pg_get_userbyid(e.grantee) END,
                    e.privilege_type, CASE WHEN e.is_grantable THEN '*' ELSE '' END) AS item
        FROM aclexplode(coalesce(${acl}, acldefault((${kind})::"char", ${owner}))) e
       WHERE NOT (e.grantee = ${owner} AND e.privilege_type = 'MAINTAIN')) items)`;

/** Owned objects of the user's schemas: catalog, owner column, namespace column, condition (multirange types follow their range). */
const OWNED: [string, string, string, string][] = [
  ['pg_class', 'relowner', 'relnamespace', `relkind IN ('r', 'p', 'v', 'm', 'S', 'f')`],
  ['pg_type', 'typowner', 'typnamespace', `typtype IN ('e', 'd', 'r') OR (typtype = 'c' AND (SELECT relkind FROM pg_class WHERE oid = typrelid) = 'c')`],
  ['pg_proc', 'proowner', 'pronamespace', NOT_INTERNAL('pg_proc', 'x.oid')],
  ['pg_operator', 'oprowner', 'oprnamespace', 'true'],
  ['pg_opclass', 'opcowner', 'opcnamespace', 'true'],
  ['pg_opfamily', 'opfowner', 'opfnamespace', 'true'],
  ['pg_collation', 'collowner', 'collnamespace', 'true'],
  ['pg_ts_config', 'cfgowner', 'cfgnamespace', 'true'],
  ['pg_ts_dict', 'dictowner', 'dictnamespace', 'true'],
  ['pg_statistic_ext', 'stxowner', 'stxnamespace', 'true'],
];

async function serverMajor(client: pg.Client): Promise<number> {
  const { rows } = await client.query(`SELECT current_setting('server_version_num')::int / 10000 AS major`);
  return rows[0].major;
}

/** The fixture's kinds beyond catalogSnapshot, each as rows of names and deparsed definitions. */
async function extraKinds(client: pg.Client): Promise<Record<string, unknown[]>> {
  const major = await serverMajor(client);
  const read = async (sql: string) => (await client.query(sql)).rows;
  const iculocale = major >= 17 ? 'co.colllocale' : major >= 15 ? 'co.colliculocale' : 'NULL';
  const statTarget = (column: string) => (major >= 17 ? column : `nullif(${column}, -1)`);
  return {
    schemas: await read(
      `SELECT n.nspname, CASE WHEN n.nspname = 'public' THEN '' ELSE pg_get_userbyid(n.nspowner) END AS owner,
              ${aclItems('n.nspacl', 'n.nspowner', "'n'")} AS acl, obj_description(n.oid, 'pg_namespace') AS comment
         FROM pg_namespace n WHERE ${USER} ORDER BY 1`,
    ),
    // PostgreSQL 15 moved an ICU collation's locale from collcollate to colliculocale, 17 to colllocale.
    collations: await read(
      `SELECT format('%I.%I', n.nspname, co.collname) AS collation, co.collprovider, co.collisdeterministic,
              coalesce(${iculocale}, co.collcollate) AS locale, CASE WHEN co.collprovider = 'c' THEN co.collctype END AS ctype
         FROM pg_collation co JOIN pg_namespace n ON n.oid = co.collnamespace WHERE ${USER} ORDER BY 1`,
    ),
    owners: await read(
      OWNED.map(
        ([catalog, owner, namespace, condition]) =>
          `SELECT pg_describe_object('${catalog}'::regclass, x.oid, 0) AS object, pg_get_userbyid(x.${owner}) AS owner
             FROM ${catalog} x JOIN pg_namespace n ON n.oid = x.${namespace} WHERE ${USER} AND (${condition})`,
      ).join(' UNION ALL ') + ' ORDER BY 1',
    ),
    privileges: await read(
      `SELECT pg_describe_object('pg_class'::regclass, c.oid, 0) AS object, ${aclItems('c.relacl', 'c.relowner', "CASE WHEN c.relkind = 'S' THEN 's' ELSE 'r' END")} AS acl
         FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE ${USER} AND c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f')
       UNION ALL
       SELECT pg_describe_object('pg_class'::regclass, c.oid, a.attnum), ${aclItems('a.attacl', 'c.relowner', "'c'")}
         FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE ${USER} AND a.attacl IS NOT NULL
       UNION ALL
       SELECT pg_describe_object('pg_proc'::regclass, p.oid, 0), ${aclItems('p.proacl', 'p.proowner', "'f'")}
         FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace WHERE ${USER} AND ${NOT_INTERNAL('pg_proc', 'p.oid')}
       UNION ALL
       SELECT pg_describe_object('pg_type'::regclass, t.oid, 0), ${aclItems('t.typacl', 't.typowner', "'T'")}
         FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace WHERE ${USER} AND t.typtype IN ('e', 'd', 'r')
       ORDER BY 1`,
    ),
    defaultPrivileges: await read(
      `SELECT pg_get_userbyid(d.defaclrole) AS role, (SELECT nspname FROM pg_namespace WHERE oid = d.defaclnamespace) AS schema, d.defaclobjtype,
              (SELECT string_agg(format('%s:%s%s', CASE WHEN e.grantee = 0 THEN 'PUBLIC' ELSE pg_get_userbyid(e.grantee) END, e.privilege_type,
                                        CASE WHEN e.is_grantable THEN '*' ELSE '' END), ',' ORDER BY e.grantee, e.privilege_type)
                 FROM aclexplode(d.defaclacl) e) AS acl
         FROM pg_default_acl d ORDER BY 1, 2, 3`,
    ),
    comments: await read(
      `SELECT pg_describe_object(d.classoid, d.objoid, d.objsubid) AS object, d.description
         FROM pg_description d WHERE d.objoid >= 16384 AND pg_describe_object(d.classoid, d.objoid, d.objsubid) !~ 'pgferry'
        ORDER BY 1`,
    ),
    aggregates: await read(
      `SELECT a.aggfnoid::regprocedure::text AS aggregate, a.aggkind, a.aggnumdirectargs, a.aggtransfn::regproc::text AS transfn,
              a.aggfinalfn::regproc::text AS finalfn, a.aggcombinefn::regproc::text AS combinefn, a.aggmtransfn::regproc::text AS mtransfn,
              a.aggsortop::regoperator::text AS sortop, a.aggtranstype::regtype::text AS transtype, a.agginitval, p.proparallel
         FROM pg_aggregate a JOIN pg_proc p ON p.oid = a.aggfnoid JOIN pg_namespace n ON n.oid = p.pronamespace WHERE ${USER} ORDER BY 1`,
    ),
    operators: await read(
      `SELECT o.oid::regoperator::text AS operator, o.oprkind, o.oprcode::regproc::text AS code, o.oprresult::regtype::text AS result,
              o.oprcom::regoperator::text AS commutator, o.oprnegate::regoperator::text AS negator, o.oprrest::regproc::text AS restrict,
              o.oprjoin::regproc::text AS join, o.oprcanmerge, o.oprcanhash
         FROM pg_operator o JOIN pg_namespace n ON n.oid = o.oprnamespace WHERE ${USER} ORDER BY 1`,
    ),
    operatorFamilies: await read(
      `SELECT format('%I.%I', n.nspname, f.opfname) AS family, am.amname,
              (SELECT string_agg(format('%s %s %s', o.amopstrategy, o.amopopr::regoperator, o.amoppurpose), ', ' ORDER BY o.amopstrategy, o.amopopr::regoperator::text)
                 FROM pg_amop o WHERE o.amopfamily = f.oid) AS operators,
              (SELECT string_agg(format('%s %s', p.amprocnum, p.amproc::regprocedure), ', ' ORDER BY p.amprocnum, p.amproc::regprocedure::text)
                 FROM pg_amproc p WHERE p.amprocfamily = f.oid) AS functions
         FROM pg_opfamily f JOIN pg_am am ON am.oid = f.opfmethod JOIN pg_namespace n ON n.oid = f.opfnamespace WHERE ${USER} ORDER BY 1, 2`,
    ),
    operatorClasses: await read(
      `SELECT format('%I.%I', n.nspname, c.opcname) AS class, am.amname, c.opcintype::regtype::text AS type, c.opcdefault,
              c.opckeytype::regtype::text AS keytype, (SELECT format('%I.%I', fn.nspname, f.opfname) FROM pg_opfamily f
                 JOIN pg_namespace fn ON fn.oid = f.opfnamespace WHERE f.oid = c.opcfamily) AS family
         FROM pg_opclass c JOIN pg_am am ON am.oid = c.opcmethod JOIN pg_namespace n ON n.oid = c.opcnamespace WHERE ${USER} ORDER BY 1, 2`,
    ),
    casts: await read(
      `SELECT c.castsource::regtype::text AS source, c.casttarget::regtype::text AS target, c.castfunc::regprocedure::text AS function,
              c.castcontext, c.castmethod
         FROM pg_cast c WHERE c.oid >= 16384 AND (c.castfunc = 0 OR ${NOT_INTERNAL('pg_proc', 'c.castfunc')}) ORDER BY 1, 2`,
    ),
    textSearch: await read(
      `SELECT 'configuration' AS kind, format('%I.%I', n.nspname, c.cfgname) AS name,
              (SELECT format('%I.%I', pn.nspname, p.prsname) FROM pg_ts_parser p JOIN pg_namespace pn ON pn.oid = p.prsnamespace WHERE p.oid = c.cfgparser) AS definition,
              (SELECT string_agg(format('%s:%s:%s', m.maptokentype, m.mapseqno, m.mapdict::regdictionary), ', ' ORDER BY m.maptokentype, m.mapseqno)
                 FROM pg_ts_config_map m WHERE m.mapcfg = c.oid) AS detail
         FROM pg_ts_config c JOIN pg_namespace n ON n.oid = c.cfgnamespace WHERE ${USER}
       UNION ALL
       SELECT 'dictionary', format('%I.%I', n.nspname, d.dictname),
              (SELECT format('%I.%I', tn.nspname, t.tmplname) FROM pg_ts_template t JOIN pg_namespace tn ON tn.oid = t.tmplnamespace WHERE t.oid = d.dicttemplate),
              d.dictinitoption
         FROM pg_ts_dict d JOIN pg_namespace n ON n.oid = d.dictnamespace WHERE ${USER}
       UNION ALL
       SELECT 'parser', format('%I.%I', n.nspname, p.prsname),
              format('%s %s %s %s', p.prsstart::regproc, p.prstoken::regproc, p.prsend::regproc, p.prslextype::regproc), p.prsheadline::regproc::text
         FROM pg_ts_parser p JOIN pg_namespace n ON n.oid = p.prsnamespace WHERE ${USER}
       UNION ALL
       SELECT 'template', format('%I.%I', n.nspname, t.tmplname), format('%s %s', t.tmplinit::regproc, t.tmpllexize::regproc), NULL
         FROM pg_ts_template t JOIN pg_namespace n ON n.oid = t.tmplnamespace WHERE ${USER}
       ORDER BY 1, 2`,
    ),
    statistics: await read(
      `SELECT format('%I.%I', n.nspname, s.stxname) AS statistics, pg_get_statisticsobjdef(s.oid) AS def, ${statTarget('s.stxstattarget')}::int AS target
         FROM pg_statistic_ext s JOIN pg_namespace n ON n.oid = s.stxnamespace WHERE ${USER} ORDER BY 1`,
    ),
    rowSecurity: await read(
      `SELECT ${REL} AS rel, c.relrowsecurity, c.relforcerowsecurity FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE ${USER} AND (c.relrowsecurity OR c.relforcerowsecurity) ORDER BY 1`,
    ),
    policies: await read(
      `SELECT schemaname, tablename, policyname, permissive, roles::text, cmd, qual, with_check FROM pg_policies
        WHERE schemaname NOT IN ('pgferry', 'pgferry_capture') ORDER BY 1, 2, 3`,
    ),
    rules: await read(
      `SELECT ${REL} AS rel, r.rulename, pg_get_ruledef(r.oid) AS def, r.ev_enabled
         FROM pg_rewrite r JOIN pg_class c ON c.oid = r.ev_class JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE ${USER} AND r.rulename <> '_RETURN' ORDER BY 1, 2`,
    ),
    ranges: await read(
      `SELECT r.rngtypid::regtype::text AS range, r.rngsubtype::regtype::text AS subtype,
              (SELECT collname FROM pg_collation WHERE oid = r.rngcollation) AS collation,
              (SELECT format('%I.%I', cn.nspname, o.opcname) FROM pg_opclass o JOIN pg_namespace cn ON cn.oid = o.opcnamespace WHERE o.oid = r.rngsubopc) AS opclass,
              r.rngcanonical::regproc::text AS canonical, r.rngsubdiff::regproc::text AS subdiff
         FROM pg_range r JOIN pg_type t ON t.oid = r.rngtypid JOIN pg_namespace n ON n.oid = t.typnamespace WHERE ${USER} ORDER BY 1`,
    ),
    toastOptions: await read(
      `SELECT ${REL} AS rel, t.reloptions::text AS options FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
         JOIN pg_class t ON t.oid = c.reltoastrelid WHERE ${USER} AND t.reloptions IS NOT NULL ORDER BY 1`,
    ),
    typedTables: await read(
      `SELECT ${REL} AS rel, c.reloftype::regtype::text AS of_type FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE ${USER} AND c.reloftype <> 0 ORDER BY 1`,
    ),
    materializedViews: await read(
      `SELECT ${REL} AS rel, c.relispopulated FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE ${USER} AND c.relkind = 'm' ORDER BY 1`,
    ),
    // attcompression exists from 14; a 13 source has none, which reads as the default ('').
    columnOptions: await read(
      `SELECT ${REL} AS rel, a.attname, a.attoptions::text AS options, ${major >= 14 ? 'a.attcompression::text' : "''"} AS compression,
              CASE WHEN c.relkind IN ('i', 'I') THEN ${statTarget('a.attstattarget')}::int END AS index_statistics
         FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE ${USER} AND a.attnum > 0 AND NOT a.attisdropped
          AND (a.attoptions IS NOT NULL ${major >= 14 ? "OR a.attcompression <> ''" : ''} OR (c.relkind IN ('i', 'I') AND ${statTarget('a.attstattarget')} IS NOT NULL))
        ORDER BY 1, 2`,
    ),
  };
}

/**
 * The fixture's whole catalog: catalogSnapshot's parts (columns numbered by position, since a
 * dropped column leaves a gap in attnum the target need not have) and the kinds above.
 */
export async function fidelityCatalog(client: pg.Client, options: { unqualifiedViews?: boolean; olderThan14?: boolean } = {}): Promise<Record<string, unknown[]>> {
  const base = await catalogSnapshot(client, options);
  const positions = new Map<string, number>();
  base.columns = (base.columns as { rel: string; attnum: number }[]).map(({ attnum: _attnum, ...column }) => {
    const position = (positions.get(column.rel) ?? 0) + 1;
    positions.set(column.rel, position);
    return { ...column, position };
  });
  return { ...base, ...(await extraKinds(client)) };
}

/** Per catalog part, the rows only the source or only the target has (parts that agree are left out). */
export function catalogDifferences(source: Record<string, unknown[]>, target: Record<string, unknown[]>): Record<string, { onlyInSource: string[]; onlyInTarget: string[] }> {
  const differences: Record<string, { onlyInSource: string[]; onlyInTarget: string[] }> = {};
  for (const part of new Set([...Object.keys(source), ...Object.keys(target)])) {
    const rows = (side: Record<string, unknown[]>) => (side[part] ?? []).map((row) => JSON.stringify(row));
    const difference = lineDifferences(rows(source), rows(target));
    if (difference.onlyInSource.length > 0 || difference.onlyInTarget.length > 0) differences[part] = difference;
  }
  return differences;
}

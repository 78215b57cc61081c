/**
 * Aggregates, operators, operator families and operator classes: read from the source catalog
 * and deparsed to DDL (the server has no pg_get_*def for them). Same rules as definitions.ts:
 * run inside `readSource`, so every name the server prints (regproc, regoperator, format_type)
 * is schema-qualified.
 */
import type pg from 'pg';
import { SYSTEM_SCHEMAS } from '../catalog/tables.js';
import { NOT_MEMBER, USER_SCHEMA, type Node, type NodeKind } from './definitions.js';

/** Identities, as SQL over the catalog row aliased `x` with namespace `n`: the plan and the target's existing objects use the same text. */
export const OPERATOR_IDENTITY = `format('%I.%s(%s, %s)', n.nspname, x.oprname, coalesce(format_type(nullif(x.oprleft, 0), NULL), 'NONE'),
                                         coalesce(format_type(nullif(x.oprright, 0), NULL), 'NONE'))`;
export const OPFAMILY_IDENTITY = `format('%I.%I USING %I', n.nspname, x.opfname, (SELECT amname FROM pg_am WHERE oid = x.opfmethod))`;
export const OPCLASS_IDENTITY = `format('%I.%I USING %I', n.nspname, x.opcname, (SELECT amname FROM pg_am WHERE oid = x.opcmethod))`;

/** A regproc column as DDL wants it: NULL when unset ('-'), so concat_ws leaves the option out. */
const proc = (column: string) => `CASE WHEN ${column}::oid <> 0 THEN ${column}::regproc::text END`;
const MODIFY = (column: string) => `CASE ${column} WHEN 'r' THEN 'READ_ONLY' WHEN 's' THEN 'SHAREABLE' WHEN 'w' THEN 'READ_WRITE' END`;
const OPERATOR_NAME = (oid: string) =>
  `(SELECT format('OPERATOR(%I.%s)', pn.nspname, po.oprname) FROM pg_operator po JOIN pg_namespace pn ON pn.oid = po.oprnamespace WHERE po.oid = ${oid})`;

interface Row {
  key: string;
  schema: string;
  identity: string;
  sql: string;
  more?: string[];
}

const toNode =
  (kind: NodeKind) =>
  (r: Row): Node => ({ key: r.key, kind, identity: r.identity, schema: r.schema, create: [r.sql, ...(r.more ?? [])], finish: [] });

/** Every aggregate of pg_aggregate: plain, moving, ordered-set and hypothetical-set, with their options. */
export async function aggregateNodes(source: pg.Client): Promise<Node[]> {
  const { rows } = await source.query<Row>(
    `SELECT 'proc:' || p.oid AS key, n.nspname AS schema,
            format('%I.%I(%s)', n.nspname, p.proname, oidvectortypes(p.proargtypes)) AS identity,
            format('CREATE AGGREGATE %I.%I(%s) (%s)', n.nspname, p.proname, coalesce(nullif(pg_get_function_arguments(p.oid), ''), '*'),
              concat_ws(', ',
                'SFUNC = ' || a.aggtransfn::regproc::text, 'STYPE = ' || format_type(a.aggtranstype, NULL),
                'SSPACE = ' || nullif(a.aggtransspace, 0), 'INITCOND = ' || quote_literal(a.agginitval),
                'FINALFUNC = ' || ${proc('a.aggfinalfn')},
                CASE WHEN a.aggfinalextra THEN 'FINALFUNC_EXTRA' END,
                CASE WHEN a.aggfinalfn::oid <> 0 THEN 'FINALFUNC_MODIFY = ' || ${MODIFY('a.aggfinalmodify')} END,
                'COMBINEFUNC = ' || ${proc('a.aggcombinefn')},
                'SERIALFUNC = ' || ${proc('a.aggserialfn')}, 'DESERIALFUNC = ' || ${proc('a.aggdeserialfn')},
                'MSFUNC = ' || ${proc('a.aggmtransfn')}, 'MINVFUNC = ' || ${proc('a.aggminvtransfn')},
                'MSTYPE = ' || format_type(nullif(a.aggmtranstype, 0), NULL),
                'MSSPACE = ' || nullif(a.aggmtransspace, 0), 'MINITCOND = ' || quote_literal(a.aggminitval),
                'MFINALFUNC = ' || ${proc('a.aggmfinalfn')},
                CASE WHEN a.aggmfinalextra THEN 'MFINALFUNC_EXTRA' END,
                CASE WHEN a.aggmfinalfn::oid <> 0 THEN 'MFINALFUNC_MODIFY = ' || ${MODIFY('a.aggmfinalmodify')} END,
                'SORTOP = ' || ${OPERATOR_NAME('a.aggsortop')},
                CASE WHEN a.aggkind = 'h' THEN 'HYPOTHETICAL' END,
                CASE p.proparallel WHEN 's' THEN 'PARALLEL = SAFE' WHEN 'r' THEN 'PARALLEL = RESTRICTED' END)) AS sql
       FROM pg_aggregate a JOIN pg_proc p ON p.oid = a.aggfnoid JOIN pg_namespace n ON n.oid = p.pronamespace
      WHERE ${USER_SCHEMA('n')} AND ${NOT_MEMBER('pg_proc', 'p.oid')}`,
    [SYSTEM_SCHEMAS],
  );
  return rows.map(toNode('aggregate'));
}

/** Operators; a shell (named as a commutator or negator, never defined) is not one: defining its partner creates it again. */
export async function operatorNodes(source: pg.Client): Promise<Node[]> {
  const { rows } = await source.query<Row>(
    `SELECT 'opr:' || x.oid AS key, n.nspname AS schema, ${OPERATOR_IDENTITY} AS identity,
            format('CREATE OPERATOR %I.%s (%s)', n.nspname, x.oprname, concat_ws(', ',
              'FUNCTION = ' || x.oprcode::regproc::text,
              'LEFTARG = ' || format_type(nullif(x.oprleft, 0), NULL), 'RIGHTARG = ' || format_type(nullif(x.oprright, 0), NULL),
              'COMMUTATOR = ' || ${OPERATOR_NAME('x.oprcom')}, 'NEGATOR = ' || ${OPERATOR_NAME('x.oprnegate')},
              'RESTRICT = ' || ${proc('x.oprrest')}, 'JOIN = ' || ${proc('x.oprjoin')},
              CASE WHEN x.oprcanhash THEN 'HASHES' END, CASE WHEN x.oprcanmerge THEN 'MERGES' END)) AS sql
       FROM pg_operator x JOIN pg_namespace n ON n.oid = x.oprnamespace
      WHERE x.oprcode::oid <> 0 AND ${USER_SCHEMA('n')} AND ${NOT_MEMBER('pg_operator', 'x.oid')}`,
    [SYSTEM_SCHEMAS],
  );
  return rows.map(toNode('operator'));
}

/** Members of an operator class depend on it internally; the others ("loose") belong to the family. */
const CLASS_MEMBER = (catalog: string, member: string, opclass: string) =>
  `EXISTS (SELECT 1 FROM pg_depend md WHERE md.classid = '${catalog}'::regclass AND md.objid = ${member}
             AND md.refclassid = 'pg_opclass'::regclass AND md.deptype = 'i'${opclass ? ` AND md.refobjid = ${opclass}` : ''})`;

/** OPERATOR and FUNCTION items of a family (loose members) or of a class, each with its operand types. */
const ITEMS = (family: string, member: (catalog: string, oid: string) => string) => `
  ARRAY(SELECT format('OPERATOR %s %s', o.amopstrategy, o.amopopr::regoperator)
               || CASE WHEN o.amoppurpose = 'o' THEN
                    (SELECT format(' FOR ORDER BY %I.%I', sn.nspname, sf.opfname) FROM pg_opfamily sf
                       JOIN pg_namespace sn ON sn.oid = sf.opfnamespace WHERE sf.oid = o.amopsortfamily) ELSE '' END
          FROM pg_amop o WHERE o.amopfamily = ${family} AND ${member('pg_amop', 'o.oid')}
         ORDER BY o.amopstrategy, o.amoplefttype, o.amoprighttype)
  || ARRAY(SELECT format('FUNCTION %s (%s, %s) %s', p.amprocnum, format_type(p.amproclefttype, NULL), format_type(p.amprocrighttype, NULL),
                         p.amproc::regprocedure)
             FROM pg_amproc p WHERE p.amprocfamily = ${family} AND ${member('pg_amproc', 'p.oid')}
            ORDER BY p.amprocnum, p.amproclefttype, p.amprocrighttype)`;

/** Operator families, then their loose members (ALTER OPERATOR FAMILY … ADD). */
export async function operatorFamilyNodes(source: pg.Client): Promise<Node[]> {
  const { rows } = await source.query<Row & { items: string[] }>(
    `SELECT 'opf:' || x.oid AS key, n.nspname AS schema, ${OPFAMILY_IDENTITY} AS identity,
            format('CREATE OPERATOR FAMILY %s', ${OPFAMILY_IDENTITY}) AS sql,
            ${ITEMS('x.oid', (catalog, oid) => `NOT ${CLASS_MEMBER(catalog, oid, '')}`)} AS items
       FROM pg_opfamily x JOIN pg_namespace n ON n.oid = x.opfnamespace
      WHERE ${USER_SCHEMA('n')} AND ${NOT_MEMBER('pg_opfamily', 'x.oid')}`,
    [SYSTEM_SCHEMAS],
  );
  return rows.map((r) => toNode('operator family')({ ...r, more: r.items.length ? [`ALTER OPERATOR FAMILY ${r.identity} ADD ${r.items.join(', ')}`] : [] }));
}

/** Operator classes, always naming their family (created before them: the one CREATE OPERATOR CLASS would make has the same name). */
export async function operatorClassNodes(source: pg.Client): Promise<Node[]> {
  const { rows } = await source.query<Row & { items: string[]; head: string; storage: string; has_storage: boolean }>(
    `SELECT 'opc:' || x.oid AS key, n.nspname AS schema, ${OPCLASS_IDENTITY} AS identity,
            format('CREATE OPERATOR CLASS %I.%I %sFOR TYPE %s USING %I FAMILY %I.%I AS ', n.nspname, x.opcname,
                   CASE WHEN x.opcdefault THEN 'DEFAULT ' ELSE '' END, format_type(x.opcintype, NULL),
                   (SELECT amname FROM pg_am WHERE oid = x.opcmethod), fn.nspname, f.opfname) AS head,
            ${ITEMS('x.opcfamily', (catalog, oid) => CLASS_MEMBER(catalog, oid, 'x.oid'))} AS items,
            'STORAGE ' || format_type(coalesce(nullif(x.opckeytype, 0), x.opcintype), NULL) AS storage,
            x.opckeytype <> 0 AS has_storage
       FROM pg_opclass x JOIN pg_namespace n ON n.oid = x.opcnamespace
       JOIN pg_opfamily f ON f.oid = x.opcfamily JOIN pg_namespace fn ON fn.oid = f.opfnamespace
      WHERE ${USER_SCHEMA('n')} AND ${NOT_MEMBER('pg_opclass', 'x.oid')}`,
    [SYSTEM_SCHEMAS],
  );
  return rows.map((r) => {
    // A class needs one item at least: STORAGE of its own type, like pg_dump, changes nothing.
    const items = [...r.items, ...(r.has_storage || r.items.length === 0 ? [r.storage] : [])];
    return toNode('operator class')({ ...r, sql: r.head + items.join(', ') });
  });
}

/** Loose members of a built-in operator family whose operator or function is in a selected schema: listed as not migrated. */
export const builtInFamilyMembers = (inSelection: (column: string) => string) =>
  `SELECT 'operator family member', 'pg_amop'::regclass, o.oid, 0 FROM pg_amop o JOIN pg_operator op ON op.oid = o.amopopr
    WHERE o.oid >= 16384 AND o.amopfamily < 16384 AND ${inSelection('op.oprnamespace')}
   UNION ALL SELECT 'operator family member', 'pg_amproc'::regclass, a.oid, 0 FROM pg_amproc a JOIN pg_proc p ON p.oid = a.amproc
    WHERE a.oid >= 16384 AND a.amprocfamily < 16384 AND ${inSelection('p.pronamespace')}`;

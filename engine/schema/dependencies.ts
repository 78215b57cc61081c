/**
 * Dependencies between user objects on the source (pg_depend), and the extensions they may
 * belong to: what the schema plan follows to widen the selection and to order the objects.
 */
import type pg from 'pg';
import { TEXT_SEARCH_OBJECTS } from './text-search.js';

export interface Edge {
  node: string;
  ref: string | null;
  deptype: string;
  /** null for the object itself (a column default, a view's query); else the kind of table sub-object behind the edge. */
  via: 'index' | 'constraint' | 'trigger' | 'rule' | null;
  /** The extension the referenced object belongs to. */
  extension: string | null;
  refName: string | null;
}

/** An operator family member (pg_amop, pg_amproc) is created by its operator class, or else (a loose member) with its family. */
const MEMBER_OF = (catalog: string, family: string) =>
  `coalesce((SELECT 'opc:' || md.refobjid FROM pg_depend md WHERE md.classid = '${catalog}'::regclass AND md.objid = ${catalog}.oid
                AND md.refclassid = 'pg_opclass'::regclass AND md.deptype = 'i'), 'opf:' || ${family})`;

/**
 * Dependencies between user objects from pg_depend, each side mapped to the node that creates
 * it: a column default, a view's rewrite rule or a domain's check belong to their table, view or
 * domain; an array type to its element type; a table's row type and identity sequences to the table;
 * an operator family member to its class or family; a text search configuration's mappings to it.
 */
export async function dependencies(source: pg.Client, version: number): Promise<Edge[]> {
  const multirange = version >= 140000 ? ', (SELECT rg.rngtypid FROM pg_range rg WHERE rg.rngmultitypid = t.oid)' : '';
  const { rows } = await source.query<Edge>(
    `WITH obj(classid, objid, node, via) AS (
       SELECT 'pg_class'::regclass, c.oid,
              CASE WHEN c.relkind = 'c' THEN 'type:' || c.reltype
                   WHEN c.relkind IN ('i', 'I') THEN 'rel:' || x.indrelid
                   ELSE 'rel:' || coalesce(ident.refobjid, c.oid) END,
              CASE WHEN c.relkind IN ('i', 'I') THEN 'index' END
         FROM pg_class c
         LEFT JOIN pg_index x ON x.indexrelid = c.oid
         LEFT JOIN pg_depend ident ON c.relkind = 'S' AND ident.classid = 'pg_class'::regclass AND ident.objid = c.oid
                                  AND ident.refclassid = 'pg_class'::regclass AND ident.deptype = 'i'
        WHERE c.oid >= 16384 AND c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f', 'c', 'i', 'I')
       UNION ALL
       SELECT 'pg_type'::regclass, t.oid,
              CASE WHEN b.typrelid <> 0 AND r.relkind <> 'c' THEN 'rel:' || b.typrelid ELSE 'type:' || b.oid END, NULL
         FROM pg_type t
         JOIN pg_type b ON b.oid = coalesce((SELECT e.oid FROM pg_type e WHERE e.typarray = t.oid)${multirange}, t.oid)
         LEFT JOIN pg_class r ON r.oid = b.typrelid
        WHERE t.oid >= 16384
       UNION ALL SELECT 'pg_proc'::regclass, oid, 'proc:' || oid, NULL FROM pg_proc WHERE oid >= 16384
       UNION ALL SELECT 'pg_collation'::regclass, oid, 'coll:' || oid, NULL FROM pg_collation WHERE oid >= 16384
       UNION ALL SELECT 'pg_attrdef'::regclass, oid, 'rel:' || adrelid, NULL FROM pg_attrdef WHERE oid >= 16384
       UNION ALL SELECT 'pg_rewrite'::regclass, oid, 'rel:' || ev_class, CASE WHEN rulename <> '_RETURN' THEN 'rule' END
                   FROM pg_rewrite WHERE oid >= 16384
       UNION ALL SELECT 'pg_constraint'::regclass, oid,
                        CASE WHEN contypid <> 0 THEN 'type:' || contypid ELSE 'rel:' || conrelid END,
                        CASE WHEN contypid = 0 THEN 'constraint' END
                   FROM pg_constraint WHERE oid >= 16384
       UNION ALL SELECT 'pg_trigger'::regclass, oid, 'rel:' || tgrelid, 'trigger' FROM pg_trigger WHERE oid >= 16384
       UNION ALL SELECT 'pg_operator'::regclass, oid, 'opr:' || oid, NULL FROM pg_operator WHERE oid >= 16384
       UNION ALL SELECT 'pg_opfamily'::regclass, oid, 'opf:' || oid, NULL FROM pg_opfamily WHERE oid >= 16384
       UNION ALL SELECT 'pg_opclass'::regclass, oid, 'opc:' || oid, NULL FROM pg_opclass WHERE oid >= 16384
       UNION ALL SELECT 'pg_amop'::regclass, oid, ${MEMBER_OF('pg_amop', 'amopfamily')}, NULL FROM pg_amop WHERE oid >= 16384
       UNION ALL SELECT 'pg_amproc'::regclass, oid, ${MEMBER_OF('pg_amproc', 'amprocfamily')}, NULL FROM pg_amproc WHERE oid >= 16384
       UNION ALL SELECT 'pg_cast'::regclass, oid, 'cast:' || oid, NULL FROM pg_cast WHERE oid >= 16384
       UNION ALL ${TEXT_SEARCH_OBJECTS}
     ),
     member AS (SELECT m.classid, m.objid, x.extname FROM pg_depend m JOIN pg_extension x ON x.oid = m.refobjid WHERE m.deptype = 'e')
     SELECT DISTINCT a.node, b.node AS ref, d.deptype::text AS deptype, a.via, coalesce(m1.extname, m2.extname) AS extension,
            CASE WHEN b.node IS NOT NULL THEN pg_describe_object(d.refclassid, d.refobjid, 0) END AS "refName"
       FROM pg_depend d
       JOIN obj a ON a.classid = d.classid AND a.objid = d.objid
       LEFT JOIN obj b ON b.classid = d.refclassid AND b.objid = d.refobjid
       LEFT JOIN member m1 ON m1.classid = d.refclassid AND m1.objid = d.refobjid
       LEFT JOIN pg_type arr ON d.refclassid = 'pg_type'::regclass AND arr.typarray = d.refobjid
       LEFT JOIN member m2 ON m2.classid = 'pg_type'::regclass AND m2.objid = arr.oid
      WHERE d.deptype IN ('n', 'a') AND d.refobjid >= 16384 AND a.node IS DISTINCT FROM b.node`,
  );
  return rows;
}

export interface ExtensionRow {
  name: string;
  identity: string;
  schema: string;
  schemaIdentity: string;
}

export async function extensionRows(source: pg.Client): Promise<ExtensionRow[]> {
  const { rows } = await source.query<ExtensionRow>(
    `SELECT x.extname AS name, quote_ident(x.extname) AS identity, n.nspname AS schema, quote_ident(n.nspname) AS "schemaIdentity"
       FROM pg_extension x JOIN pg_namespace n ON n.oid = x.extnamespace ORDER BY x.oid`,
  );
  return rows;
}

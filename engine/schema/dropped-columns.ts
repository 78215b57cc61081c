/**
 * `objects.excludedColumns: "drop"` (issue 15 item 2): the columns a table's `columns` or
 * `excludeColumns` leave out are not created on the target at all (by default they are, and stay
 * at their default). Indexes, constraints, foreign keys and triggers that use such a column are
 * skipped and reported (postdata.ts asks ON_DROPPED which); what else depends on one (views,
 * rules, policies, statistics objects, sequences owned by it) fails precheck, naming each.
 */
import type pg from 'pg';
import type { TableInfo } from '../catalog/tables.js';
import { excludedColumns, optionsOf } from '../cdc/row-filter.js';
import type { MigrationSpec } from '../spec/index.js';

export interface DroppedColumn {
  /** The table's OID and the column's number on the source. */
  oid: number;
  attnum: number;
  /** quote_ident of the column's name, as table-definitions.ts names columns. */
  column: string;
  /** `schema.table.column`, each part as format('%I') quotes it (pg_identify_object's identity of a column). */
  identity: string;
}

/** The columns of the selected tables (partitions and their roots) that are not created on the target; none unless excludedColumns is "drop". */
export async function readDroppedColumns(source: pg.Client, spec: Pick<MigrationSpec, 'objects'>, tables: TableInfo[]): Promise<DroppedColumn[]> {
  if (spec.objects.excludedColumns !== 'drop') return [];
  const pairs = tables.flatMap((t) => [...excludedColumns(t.columns.map((c) => c.name), optionsOf(spec.objects, t))].map((name) => [t.oid, name] as const));
  if (pairs.length === 0) return [];
  const { rows } = await source.query<DroppedColumn>(
    `SELECT a.attrelid::int AS oid, a.attnum::int AS attnum, quote_ident(a.attname) AS column, format('%I.%I.%I', n.nspname, c.relname, a.attname) AS identity
       FROM unnest($1::oid[], $2::text[]) AS d(oid, name)
       JOIN pg_attribute a ON a.attrelid = d.oid AND a.attname = d.name AND a.attnum > 0 AND NOT a.attisdropped
       JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace
      ORDER BY 1, 2`,
    [pairs.map(([oid]) => oid), pairs.map(([, name]) => name)],
  );
  return rows;
}

/** The parameters ON_DROPPED reads: the dropped columns' table OIDs and column numbers. */
export const droppedParams = (dropped: DroppedColumn[]) => [dropped.map((d) => d.oid), dropped.map((d) => d.attnum)];

/**
 * SQL: the names of the dropped columns the object (`classid`, `objid`) depends on (pg_depend
 * records an index's, a constraint's and a trigger's columns, its expressions' too), as a text
 * array; `$first` and the next parameter are droppedParams.
 */
export const ON_DROPPED = (classid: string, objid: string, first: number) =>
  `ARRAY(SELECT DISTINCT a.attname::text FROM pg_depend dd
           JOIN unnest($${first}::oid[], $${first + 1}::int4[]) AS dc(oid, attnum) ON dc.oid = dd.refobjid AND dc.attnum = dd.refobjsubid
           JOIN pg_attribute a ON a.attrelid = dc.oid AND a.attnum = dc.attnum
          WHERE dd.classid = '${classid}'::regclass AND dd.objid = ${objid} AND dd.refclassid = 'pg_class'::regclass ORDER BY 1)`;

/** The report line of an object skipped because it uses dropped columns. */
export const droppedDetail = (columns: string[]) =>
  `uses column(s) ${columns.map((c) => `"${c}"`).join(', ')} left out of the target (objects.excludedColumns "drop")`;

/** Objects other than indexes, constraints and triggers that depend on a dropped column, described: they could not be created on the target. */
export async function droppedColumnDependents(source: pg.Client, dropped: DroppedColumn[]): Promise<string[]> {
  if (dropped.length === 0) return [];
  const { rows } = await source.query<{ what: string }>(
    `SELECT DISTINCT format('%s (uses %s)',
              -- a view's query is its _RETURN rule: name the view
              CASE WHEN d.classid = 'pg_rewrite'::regclass THEN pg_describe_object('pg_class'::regclass, (SELECT ev_class FROM pg_rewrite WHERE oid = d.objid), 0)
                   ELSE pg_describe_object(d.classid, d.objid, d.objsubid) END,
              pg_describe_object(d.refclassid, d.refobjid, d.refobjsubid)) AS what
       FROM pg_depend d JOIN unnest($1::oid[], $2::int4[]) AS dc(oid, attnum) ON dc.oid = d.refobjid AND dc.attnum = d.refobjsubid
      WHERE d.refclassid = 'pg_class'::regclass
        AND d.classid NOT IN ('pg_constraint'::regclass, 'pg_trigger'::regclass, 'pg_attrdef'::regclass)
        AND NOT (d.classid = 'pg_class'::regclass AND (SELECT relkind FROM pg_class WHERE oid = d.objid) IN ('i', 'I'))
        -- a view's own rule on its own columns is not a dependent of the table's column
        AND NOT (d.classid = 'pg_rewrite'::regclass AND (SELECT ev_class FROM pg_rewrite WHERE oid = d.objid) = d.refobjid)
      ORDER BY 1`,
    droppedParams(dropped),
  );
  return rows.map((r) => r.what);
}

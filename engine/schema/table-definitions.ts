/**
 * Reads the selected tables (partitions, inheritance children) from the source catalog and
 * turns them into DDL, like definitions.ts does for the other pre-data objects; same rules:
 * run inside `readSource`, identities are `format('%I.%I')` strings.
 */
import type pg from 'pg';
import type { TableInfo } from '../catalog/tables.js';
import { COLLATION_NAME, NOT_MEMBER, type Node } from './definitions.js';
import type { DroppedColumn } from './dropped-columns.js';

interface TableRow {
  oid: number;
  identity: string;
  schema: string;
  unlogged: boolean;
  partition: boolean;
  partkey: string | null;
  bound: string | null;
  parents: number[];
  access_method: string | null;
  options: string[];
  replident: string;
  /** A typed table's composite type (`CREATE TABLE … OF`). */
  of_type: string | null;
  /**
   * CHECK constraints both its own and inherited, created with the table (as pg_dump does): added in
   * post-data after its parent's (which recurses to it), the child's own would be refused.
   */
  own_inherited_checks: string[];
}

interface ColumnRow {
  rel: number;
  name: string;
  type: string;
  collation: string | null;
  expr: string | null;
  not_null: boolean;
  not_null_name: string | null;
  generated: string;
  identity: string;
  local: boolean;
  identity_options: string | null;
  storage: string | null;
  statistics: number | null;
  compression: string | null;
  /** Attribute options (n_distinct…), as `name=value` clauses. */
  options: string[];
}

const STORAGE: Record<string, string> = { p: 'PLAIN', e: 'EXTERNAL', m: 'MAIN', x: 'EXTENDED' };
const COMPRESSION: Record<string, string> = { p: 'pglz', l: 'lz4' };

function columnDefinition(c: ColumnRow): string {
  return `${c.name} ${c.type}${c.collation ? ` COLLATE ${c.collation}` : ''}${columnOptions(c)}`;
}

/** What a column adds to its name and type: generation, identity, default, NOT NULL (`WITH OPTIONS` of a typed table's column). */
function columnOptions(c: ColumnRow): string {
  let def = '';
  if (c.generated) def += ` GENERATED ALWAYS AS (${c.expr}) ${c.generated === 'v' ? 'VIRTUAL' : 'STORED'}`;
  else if (c.identity) def += ` GENERATED ${c.identity === 'a' ? 'ALWAYS' : 'BY DEFAULT'} AS IDENTITY (${c.identity_options})`;
  else if (c.expr !== null) def += ` DEFAULT ${c.expr}`;
  if (c.not_null) def += c.not_null_name ? ` CONSTRAINT ${c.not_null_name} NOT NULL` : ' NOT NULL';
  return def;
}

/**
 * Tables, partitions and inheritance children, with their primary keys. A partition is created
 * `PARTITION OF` its parent (columns, defaults, keys come from it); a child `INHERITS` only
 * selected parents and declares the columns it does not get from them. A partition whose
 * columns are in another order than its parent's (it was attached), and a child with only
 * columns of its own in an order INHERITS would not give (it was added with INHERIT), are
 * created on their own and then attached or inherited, as pg_dump does: they keep their order.
 */
export async function tableNodes(source: pg.Client, tables: TableInfo[], version: number, dropped: DroppedColumn[] = []): Promise<Node[]> {
  const oids = tables.map((t) => t.oid);
  const tableRows = await readTableRows(source, oids);
  // Columns left out with objects.excludedColumns "drop" are not created (dropped-columns.ts).
  const droppedNames = new Set(dropped.map((d) => `${d.oid} ${d.column}`));
  const columnRows = (await readColumnRows(source, oids, version)).filter((c) => !droppedNames.has(`${c.rel} ${c.name}`));
  const columnsOf = new Map<number, ColumnRow[]>();
  for (const c of columnRows) columnsOf.set(c.rel, [...(columnsOf.get(c.rel) ?? []), c]);
  const byOid = new Map(tableRows.map((t) => [t.oid, t]));
  return tableRows.map((t) => tableNode(t, columnsOf, byOid));
}

async function readTableRows(source: pg.Client, oids: number[]): Promise<TableRow[]> {
  const { rows } = await source.query<TableRow>(
    `SELECT c.oid::int AS oid, format('%I.%I', n.nspname, c.relname) AS identity, n.nspname AS schema,
            c.relpersistence = 'u' AS unlogged, c.relispartition AS partition,
            CASE WHEN c.relkind = 'p' THEN pg_get_partkeydef(c.oid) END AS partkey,
            CASE WHEN c.relispartition THEN pg_get_expr(c.relpartbound, c.oid) END AS bound,
            ARRAY(SELECT i.inhparent::int FROM pg_inherits i WHERE i.inhrelid = c.oid ORDER BY i.inhseqno) AS parents,
            CASE WHEN am.amname <> 'heap' THEN quote_ident(am.amname) END AS access_method,
            ARRAY(SELECT format('%s=%L', o.option_name, o.option_value) FROM pg_options_to_table(c.reloptions) o
                  UNION ALL
                  SELECT format('toast.%s=%L', o.option_name, o.option_value) FROM pg_options_to_table(tc.reloptions) o) AS options,
            c.relreplident::text AS replident, CASE WHEN c.reloftype <> 0 THEN format_type(c.reloftype, NULL) END AS of_type,
            ARRAY(SELECT format('ADD CONSTRAINT %I %s', k.conname, pg_get_constraintdef(k.oid)) FROM pg_constraint k
                   WHERE k.conrelid = c.oid AND k.contype = 'c' AND k.conislocal AND k.coninhcount > 0 ORDER BY k.conname) AS own_inherited_checks
       FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
       LEFT JOIN pg_am am ON am.oid = c.relam LEFT JOIN pg_class tc ON tc.oid = c.reltoastrelid
      WHERE c.oid = ANY($1::oid[])`,
    [oids],
  );
  return rows;
}

async function readColumnRows(source: pg.Client, oids: number[], version: number): Promise<ColumnRow[]> {
  const notNullName =
    version >= 180000
      ? `(SELECT quote_ident(k.conname) FROM pg_constraint k WHERE k.conrelid = a.attrelid AND k.contype = 'n' AND k.conkey = ARRAY[a.attnum] AND k.conislocal)`
      : 'NULL';
  const { rows } = await source.query<ColumnRow>(
    `SELECT a.attrelid::int AS rel, quote_ident(a.attname) AS name, format_type(a.atttypid, a.atttypmod) AS type,
            CASE WHEN a.attcollation <> t.typcollation THEN ${COLLATION_NAME('a.attcollation')} END AS collation,
            pg_get_expr(d.adbin, d.adrelid) AS expr, a.attnotnull AS not_null, ${notNullName} AS not_null_name,
            a.attgenerated::text AS generated, a.attidentity::text AS identity, a.attislocal AS local,
            (SELECT format('SEQUENCE NAME %I.%I START WITH %s INCREMENT BY %s MINVALUE %s MAXVALUE %s CACHE %s%s',
                           sn.nspname, sc.relname, s.seqstart, s.seqincrement, s.seqmin, s.seqmax, s.seqcache,
                           CASE WHEN s.seqcycle THEN ' CYCLE' ELSE ' NO CYCLE' END)
               FROM pg_depend sd JOIN pg_sequence s ON s.seqrelid = sd.objid
               JOIN pg_class sc ON sc.oid = s.seqrelid JOIN pg_namespace sn ON sn.oid = sc.relnamespace
              WHERE a.attidentity <> '' AND sd.classid = 'pg_class'::regclass AND sd.refclassid = 'pg_class'::regclass
                AND sd.refobjid = a.attrelid AND sd.refobjsubid = a.attnum AND sd.deptype = 'i') AS identity_options,
            CASE WHEN a.attstorage <> t.typstorage THEN a.attstorage::text END AS storage,
            nullif(a.attstattarget, -1)::int AS statistics,
            ${version >= 140000 ? `nullif(a.attcompression, '')::text` : 'NULL'} AS compression,
            ARRAY(SELECT format('%s=%L', o.option_name, o.option_value) FROM pg_options_to_table(a.attoptions) o) AS options
       FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid
       LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
      WHERE a.attrelid = ANY($1::oid[]) AND a.attnum > 0 AND NOT a.attisdropped
      ORDER BY a.attrelid, a.attnum`,
    [oids],
  );
  return rows;
}

function tableNode(t: TableRow, columnsOf: Map<number, ColumnRow[]>, byOid: Map<number, TableRow>): Node {
  const columns = columnsOf.get(t.oid) ?? [];
  const parents = t.parents.map((oid) => byOid.get(oid)).filter((p): p is TableRow => p !== undefined);
  const parentColumns = parents.flatMap((p) => columnsOf.get(p.oid) ?? []);
  const standalone = attachedLater(t, columns, parents, columnsOf);
  const ofPartition = t.partition && parents.length > 0 && !standalone;
  const declared = columns.filter((c) => standalone || (!ofPartition && (c.local || !parentColumns.some((p) => p.name === c.name))));
  // The primary key comes in post-data with the other indexes: a load into an unindexed heap is much faster.
  const sql = createTable(t, standalone ? [] : parents, declared, ofPartition);
  const changes = tableChanges(t, columns, declared, parentColumns);
  const unselected = t.parents.length - parents.length;
  const attach = !standalone
    ? []
    : t.partition
      ? [`ALTER TABLE ${parents[0]!.identity} ATTACH PARTITION ${t.identity} ${t.bound}`]
      : parents.map((p) => `ALTER TABLE ${t.identity} INHERIT ${p.identity}`);
  const checks = t.own_inherited_checks.length ? [`ALTER TABLE ONLY ${t.identity} ${t.own_inherited_checks.join(', ')}`] : [];
  return {
    key: `rel:${t.oid}`,
    kind: 'table',
    identity: t.identity,
    schema: t.schema,
    create: [sql, ...checks, ...attach, ...(changes.length ? [`ALTER TABLE ONLY ${t.identity} ${changes.join(', ')}`] : [])],
    finish: [],
    note: unselected ? `inherits from ${unselected} table(s) that are not selected; their columns are declared on it instead` : undefined,
  };
}

/** Whether a partition or child is created with its own columns, then attached to (or made to inherit) its selected parents. */
function attachedLater(t: TableRow, columns: ColumnRow[], parents: TableRow[], columnsOf: Map<number, ColumnRow[]>): boolean {
  if (parents.length === 0) return false;
  const names = columns.map((c) => c.name);
  const parentNames = [...new Set(parents.flatMap((p) => (columnsOf.get(p.oid) ?? []).map((c) => c.name)))];
  if (t.partition) return names.join(',') !== parentNames.join(',');
  const inheritsOrder = [...parentNames, ...names.filter((n) => !parentNames.includes(n))];
  return columns.every((c) => c.local) && names.join(',') !== inheritsOrder.join(',');
}

function createTable(t: TableRow, parents: TableRow[], columns: ColumnRow[], ofPartition: boolean): string {
  const definitions = columns.map(columnDefinition);
  let sql = `CREATE ${t.unlogged ? 'UNLOGGED ' : ''}TABLE ${t.identity} `;
  if (ofPartition) sql += `PARTITION OF ${parents[0]!.identity}${definitions.length ? ` (${definitions.join(', ')})` : ''} ${t.bound}`;
  else if (t.of_type) {
    const options = columns.filter((c) => columnOptions(c)).map((c) => `${c.name} WITH OPTIONS${columnOptions(c)}`);
    sql += `OF ${t.of_type}${options.length ? ` (\n  ${options.join(',\n  ')}\n)` : ''}`;
  } else {
    sql += `(\n  ${definitions.join(',\n  ')}\n)`;
    if (parents.length) sql += ` INHERITS (${parents.map((p) => p.identity).join(', ')})`;
  }
  if (t.partkey) sql += ` PARTITION BY ${t.partkey}`;
  if (t.access_method) sql += ` USING ${t.access_method}`;
  if (t.options.length) sql += ` WITH (${t.options.join(', ')})`;
  return sql;
}

/** The ALTER TABLE clauses after the CREATE: per-column settings, and the replica identity. */
function tableChanges(t: TableRow, columns: ColumnRow[], declared: ColumnRow[], parentColumns: ColumnRow[]): string[] {
  // Inherited columns start with the parent's default and NOT NULL; the child may differ.
  const changes: string[] = [];
  for (const c of columns) {
    const column = `ALTER COLUMN ${c.name}`;
    if (!declared.includes(c)) {
      const inherited = parentColumns.find((p) => p.name === c.name);
      if (!c.generated && !c.identity && (c.expr ?? null) !== (inherited?.generated ? null : (inherited?.expr ?? null)))
        changes.push(c.expr !== null ? `${column} SET DEFAULT ${c.expr}` : `${column} DROP DEFAULT`);
      if (c.not_null && !inherited?.not_null) changes.push(`${column} SET NOT NULL`);
    }
    if (c.storage) changes.push(`${column} SET STORAGE ${STORAGE[c.storage]}`);
    if (c.statistics !== null) changes.push(`${column} SET STATISTICS ${c.statistics}`);
    if (c.compression) changes.push(`${column} SET COMPRESSION ${COMPRESSION[c.compression]}`);
    if (c.options.length) changes.push(`${column} SET (${c.options.join(', ')})`);
  }
  if (t.replident === 'f') changes.push('REPLICA IDENTITY FULL');
  if (t.replident === 'n') changes.push('REPLICA IDENTITY NOTHING');
  return changes;
}

/** Tables in the selected schemas that the selection leaves out (partitions follow their root). */
export async function unselectedTables(source: pg.Client, schemas: string[], selected: Set<number>): Promise<string[]> {
  const { rows } = await source.query<{ oid: number; identity: string }>(
    `SELECT c.oid::int AS oid, format('%I.%I', n.nspname, c.relname) AS identity
       FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
      WHERE c.relkind IN ('r', 'p') AND n.nspname = ANY($1::text[]) AND ${NOT_MEMBER('pg_class', 'c.oid')}
      ORDER BY 2`,
    [schemas],
  );
  return rows.filter((r) => !selected.has(r.oid)).map((r) => r.identity);
}

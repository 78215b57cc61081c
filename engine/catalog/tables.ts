/**
 * The tables a migration moves: read from the source catalog and filtered by the spec's
 * `objects` selection. Partitions follow their root table's selection; data is copied per
 * leaf (plain tables and leaf partitions), never through a partitioned parent.
 */
import type pg from 'pg';
import type { MigrationSpec } from '../spec/index.js';

/** Schemas never migrated: the system's, and pgferry's own control schema. */
export const CONTROL_SCHEMA = 'pgferry';
/** Where the source keeps the DDL capture of CDC (engine/cdc/ddl/capture.ts). */
export const CAPTURE_SCHEMA = 'pgferry_capture';
/** The cutover fence's function (engine/cutover/fence.ts). */
export const FENCE_SCHEMA = 'pgferry_fence';
export const SYSTEM_SCHEMAS = ['pg_catalog', 'information_schema', 'pg_toast', CONTROL_SCHEMA, CAPTURE_SCHEMA, FENCE_SCHEMA];

export interface ColumnInfo {
  name: string;
  /** `format_type(atttypid, atttypmod)`, e.g. `numeric(12,2)`, `shop.order_status[]`. */
  type: string;
  typeOid: number;
  /**
   * Whether binary COPY carries the value to the target unchanged: a built-in type (OID below
   * 16384; binary COPY embeds the OIDs of arrays' elements and composites' fields) that is not
   * a reg* type (binary reg* values are OIDs, meaningless on another server).
   */
  builtinType: boolean;
  notNull: boolean;
  /** Stored generated columns are computed by the target, never copied. */
  generated: boolean;
  identity: 'always' | 'by default' | null;
}

export interface TableRef {
  schema: string;
  name: string;
}

export interface TableInfo extends TableRef {
  oid: number;
  kind: 'table' | 'partitioned';
  /** For a partition: its top-level partitioned table. */
  root?: TableRef;
  columns: ColumnInfo[];
  /** Primary key columns in key order, or null. */
  primaryKey: string[] | null;
  replicaIdentity: 'default' | 'nothing' | 'full' | 'index';
  estimatedRows: number;
  /** Size with TOAST in bytes; pages of the main fork (what ctid ranges divide). */
  bytes: number;
  pages: number;
}

/** Per-table options from `objects.tables["schema.table"]`. */
export interface TableOptions {
  where?: string;
  columns?: string[];
  excludeColumns?: string[];
}

function globToRegExp(glob: string): RegExp {
  const escaped = glob.replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*').replace(/\?/g, '.');
  return new RegExp(`^${escaped}$`);
}

type Selection = MigrationSpec['objects'];

function matches(rules: Selection['include'], table: TableRef): boolean {
  return rules.some((rule) => rule.schema === table.schema && rule.tables.some((glob) => globToRegExp(glob).test(table.name)));
}

/** Whether a top-level table is selected: included (everything when `include` is empty) and not excluded. */
export function isSelected(selection: Selection, table: TableRef): boolean {
  if (SYSTEM_SCHEMAS.includes(table.schema) || table.schema.startsWith('pg_')) return false;
  const included = selection.include.length === 0 || matches(selection.include, table);
  return included && !matches(selection.exclude, table);
}

export function tableOptions(selection: Selection, table: TableRef): TableOptions {
  const key = tableKey(table);
  const own = Object.entries(selection.tables).find(([written]) => tableKey(parseTableKey(written)) === key);
  return own?.[1] ?? {};
}

const KEY_PART = '(?:[^."]+|"(?:[^"]|"")+")';
/** A spec key naming a table: `schema.table`, where a part that contains a dot or a quote is double-quoted (`app."v1.2"`). */
export const TABLE_KEY = new RegExp(`^(${KEY_PART})\\.(${KEY_PART})$`);

const unquotePart = (part: string) => (part.startsWith('"') ? part.slice(1, -1).replace(/""/g, '"') : part);
const quotePart = (part: string) => (/^[^."]+$/.test(part) ? part : `"${part.replace(/"/g, '""')}"`);

/** The table a spec key names (`TABLE_KEY`; the spec schema has checked its form). */
export function parseTableKey(key: string): TableRef {
  const match = TABLE_KEY.exec(key);
  if (!match) throw new Error(`"${key}" is not written "schema.table"`);
  return { schema: unquotePart(match[1]!), name: unquotePart(match[2]!) };
}

/** The one spelling of a table's spec key: parts quoted only when they contain a dot or a quote. */
export const tableKey = (table: TableRef) => `${quotePart(table.schema)}.${quotePart(table.name)}`;

/** The columns a table's data is copied through: all stored, non-generated columns, narrowed by the spec. */
export function copiedColumns(table: TableInfo, options: TableOptions): string[] {
  let names = table.columns.filter((c) => !c.generated).map((c) => c.name);
  if (options.columns) names = names.filter((n) => options.columns!.includes(n));
  if (options.excludeColumns) names = names.filter((n) => !options.excludeColumns!.includes(n));
  return names;
}

const TABLES_SQL = `
WITH RECURSIVE tree AS (
  SELECT c.oid, c.oid AS root FROM pg_class c
   WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition
  UNION ALL
  -- Only partitions belong to their parent; a legacy-inheritance child is a table of its own.
  SELECT i.inhrelid, tree.root FROM pg_inherits i JOIN tree ON i.inhparent = tree.oid
    JOIN pg_class child ON child.oid = i.inhrelid AND child.relispartition
)
SELECT c.oid::int AS oid, n.nspname AS schema, c.relname AS name, c.relkind AS kind,
       CASE WHEN tree.root <> c.oid THEN rn.nspname END AS root_schema,
       CASE WHEN tree.root <> c.oid THEN r.relname END AS root_name,
       c.relreplident AS replident,
       greatest(c.reltuples, 0)::float8 AS estimated_rows,
       pg_table_size(c.oid)::float8 AS bytes,
       (pg_relation_size(c.oid) / current_setting('block_size')::int)::float8 AS pages,
       (SELECT array_agg(a.attname::text ORDER BY k.ord)
          FROM pg_index x, unnest(x.indkey) WITH ORDINALITY k(attnum, ord), pg_attribute a
         WHERE x.indrelid = c.oid AND x.indisprimary AND a.attrelid = c.oid AND a.attnum = k.attnum) AS primary_key,
       (SELECT json_agg(json_build_object(
                 'name', a.attname,
                 'type', format_type(a.atttypid, a.atttypmod),
                 'typeOid', a.atttypid::int,
                 'builtinType', a.atttypid < 16384 AND coalesce(nullif(t.typelem, 0), a.atttypid) < 16384
                                AND t.typtype IN ('b', 'r', 'm', 'p')
                                -- reg* values are OIDs, which name other objects on the target: they travel as text
                                AND (SELECT e.typname FROM pg_type e WHERE e.oid = coalesce(nullif(t.typelem, 0), a.atttypid)) !~ '^reg'
                                -- an empty int2vector/oidvector in binary from 13 is refused by 14+ ("invalid int2vector data")
                                AND t.typname NOT IN ('int2vector', 'oidvector'),
                 'notNull', a.attnotnull,
                 'generated', a.attgenerated <> '',
                 'identity', CASE a.attidentity WHEN 'a' THEN 'always' WHEN 'd' THEN 'by default' END)
               ORDER BY a.attnum)
          FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid
         WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped) AS columns
  FROM tree
  JOIN pg_class c ON c.oid = tree.oid
  JOIN pg_namespace n ON n.oid = c.relnamespace
  JOIN pg_class r ON r.oid = tree.root
  JOIN pg_namespace rn ON rn.oid = r.relnamespace
 WHERE n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast')
   AND n.nspname NOT LIKE 'pg_temp%' AND n.nspname NOT LIKE 'pg_toast_temp%'
   AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'e')
 ORDER BY n.nspname, c.relname`;

const replicaIdentities = { d: 'default', n: 'nothing', f: 'full', i: 'index' } as const;

/** Every table of the selection, plain tables, partitioned tables and their partitions, from the source. */
export async function listTables(client: pg.Client, selection: Selection): Promise<TableInfo[]> {
  const { rows } = await client.query(TABLES_SQL);
  return rows
    .map(
      (row): TableInfo => ({
        oid: row.oid,
        schema: row.schema,
        name: row.name,
        kind: row.kind === 'p' ? 'partitioned' : 'table',
        root: row.root_schema ? { schema: row.root_schema, name: row.root_name } : undefined,
        columns: row.columns ?? [],
        primaryKey: row.primary_key ?? null,
        replicaIdentity: replicaIdentities[row.replident as keyof typeof replicaIdentities],
        estimatedRows: row.estimated_rows,
        bytes: row.bytes,
        pages: row.pages,
      }),
    )
    .filter((table) => isSelected(selection, table.root ?? table));
}

/** The tables that hold rows: plain tables and leaf partitions. */
export const dataTables = (tables: TableInfo[]) => tables.filter((t) => t.kind === 'table');

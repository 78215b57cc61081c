/**
 * Plans the full load: one work unit per table, or ctid page ranges for tables larger than
 * `fullLoad.splitTablesLargerThan` (TID range scans need PostgreSQL 14 on the source).
 */
import type pg from 'pg';
import { copiedColumns, dataTables, tableOptions, type TableInfo, type TableRef } from '../catalog/tables.js';
import { replacePlan, type PlannedTable, type WorkUnit } from '../control/index.js';
import { qualified } from '../sql.js';
import type { MigrationSpec } from '../spec/index.js';

/** Where a source table's rows go on the target (names are kept as they are). */
export const targetOf = (table: TableRef): TableRef => ({ schema: table.schema, name: table.name });

export interface TargetFacts {
  /** `format_type` of every column, keyed by `schema.table`. */
  columnTypes: Map<string, Map<string, string>>;
  /** Tables another table's foreign key references: they cannot be truncated. */
  referenced: Set<string>;
}

export async function targetFacts(target: pg.Client, tables: TableRef[]): Promise<TargetFacts> {
  const { rows } = await target.query<{ schema: string; name: string }>(
    `SELECT DISTINCT n.nspname AS schema, c.relname AS name
       FROM pg_constraint k JOIN pg_class c ON c.oid = k.confrelid JOIN pg_namespace n ON n.oid = c.relnamespace
      WHERE k.contype = 'f' AND k.conrelid <> k.confrelid`,
  );
  return { columnTypes: await targetColumnTypes(target, tables), referenced: new Set(rows.map(qualified)) };
}

async function targetColumnTypes(target: pg.Client, tables: TableRef[]): Promise<Map<string, Map<string, string>>> {
  const { rows } = await target.query<{ schema: string; name: string; column: string | null; type: string }>(
    `SELECT n.nspname AS schema, c.relname AS name, a.attname AS column, format_type(a.atttypid, a.atttypmod) AS type
       FROM unnest($1::text[], $2::text[]) AS t(schema, name)
       JOIN pg_namespace n ON n.nspname = t.schema
       JOIN pg_class c ON c.relnamespace = n.oid AND c.relname = t.name
       -- a table without columns is listed too, with no column
       LEFT JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped`,
    [tables.map((t) => t.schema), tables.map((t) => t.name)],
  );
  const types = new Map<string, Map<string, string>>();
  for (const row of rows) {
    const key = qualified(row);
    if (!types.has(key)) types.set(key, new Map());
    if (row.column !== null) types.get(key)!.set(row.column, row.type);
  }
  return types;
}

export interface PlanInput {
  tables: TableInfo[];
  target: TargetFacts;
  spec: Pick<MigrationSpec, 'objects' | 'fullLoad' | 'schema'>;
  sourceVersionNum: number;
  /** Units of the source's large objects (engine/load/large-objects.ts), planned beside the tables'. */
  largeObjects?: Omit<WorkUnit, 'id'>[];
}

export function planUnits({ tables, target: facts, spec, sourceVersionNum, largeObjects = [] }: PlanInput): WorkUnit[] {
  const threshold = spec.fullLoad.splitTablesLargerThan;
  const canSplit = sourceVersionNum >= 140000;
  const units: Omit<WorkUnit, 'id'>[] = [...largeObjects];
  for (const table of dataTables(tables)) {
    const target = targetOf(table);
    const options = tableOptions(spec.objects, table.root ?? table);
    const columns = copiedColumns(table, options);
    const types = facts.columnTypes.get(qualified(target));
    if (!types) throw new Error(`Table ${qualified(target)} does not exist on the target.`);
    const binaryFormat = columns.every((name) => {
      const column = table.columns.find((c) => c.name === name)!;
      return column.builtinType && types.get(name) === column.type;
    });
    const base = { source: { schema: table.schema, name: table.name }, target, columns, where: options.where, binaryFormat };
    const pieces = canSplit && table.bytes > threshold && table.pages > 1 ? Math.ceil(table.bytes / threshold) : 1;
    if (pieces === 1) {
      const freeze = spec.schema.existingTables !== 'ignore' && !facts.referenced.has(qualified(target));
      units.push({ ...base, freeze, estimatedBytes: table.bytes });
      continue;
    }
    const step = Math.ceil(table.pages / pieces);
    for (let from = 0; from < table.pages; from += step) {
      const last = from + step >= table.pages;
      units.push({
        ...base,
        fromPage: from,
        toPage: last ? undefined : from + step,
        freeze: false,
        estimatedBytes: Math.round((table.bytes * Math.min(step, table.pages - from)) / table.pages),
      });
    }
  }
  return units
    .sort((a, b) => b.estimatedBytes - a.estimatedBytes)
    .map((unit, index) => ({ ...unit, id: index + 1 }));
}

/** Stores the plan in the control schema, replacing an earlier one for the migration (`extra`: the large objects' row). */
export async function savePlan(target: pg.Client, migration: string, tables: TableInfo[], units: WorkUnit[], extra: PlannedTable[] = []): Promise<void> {
  const planned = dataTables(tables).map((table) => ({
    source: { schema: table.schema, name: table.name },
    target: targetOf(table),
    estimatedRows: Math.round(table.estimatedRows),
    estimatedBytes: table.bytes,
    units: units.filter((u) => u.source.schema === table.schema && u.source.name === table.name).length,
  }));
  await replacePlan(target, migration, [...planned, ...extra], units);
}

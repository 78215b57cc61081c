/**
 * Plans the full load: one work unit per table, or ctid page ranges for tables larger than
 * `fullLoad.splitTablesLargerThan` (TID range scans need PostgreSQL 14 on the source).
 */
import type pg from 'pg';
import { copiedColumns, dataTables, tableOptions, type TableInfo, type TableRef } from '../catalog/tables.js';
import { qualified } from '../sql.js';
import type { MigrationSpec } from '../spec/index.js';

export interface WorkUnit {
  id: number;
  source: TableRef;
  target: TableRef;
  columns: string[];
  where?: string;
  /** Page range `[fromPage, toPage)`; toPage absent means to the end of the table. */
  fromPage?: number;
  toPage?: number;
  binaryFormat: boolean;
  /** The unit owns the whole table: it may TRUNCATE it and COPY … FREEZE in its transaction. */
  freeze: boolean;
  estimatedBytes: number;
}

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
  const { rows } = await target.query<{ schema: string; name: string; column: string; type: string }>(
    `SELECT n.nspname AS schema, c.relname AS name, a.attname AS column, format_type(a.atttypid, a.atttypmod) AS type
       FROM unnest($1::text[], $2::text[]) AS t(schema, name)
       JOIN pg_namespace n ON n.nspname = t.schema
       JOIN pg_class c ON c.relnamespace = n.oid AND c.relname = t.name
       JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped`,
    [tables.map((t) => t.schema), tables.map((t) => t.name)],
  );
  const types = new Map<string, Map<string, string>>();
  for (const row of rows) {
    const key = qualified(row);
    if (!types.has(key)) types.set(key, new Map());
    types.get(key)!.set(row.column, row.type);
  }
  return types;
}

export interface PlanInput {
  tables: TableInfo[];
  target: TargetFacts;
  spec: Pick<MigrationSpec, 'objects' | 'fullLoad' | 'schema'>;
  sourceVersionNum: number;
}

export function planUnits({ tables, target: facts, spec, sourceVersionNum }: PlanInput): WorkUnit[] {
  const threshold = spec.fullLoad.splitTablesLargerThan;
  const canSplit = sourceVersionNum >= 140000;
  const units: Omit<WorkUnit, 'id'>[] = [];
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

/** Stores the plan in the control schema, replacing an earlier one for the migration. */
export async function savePlan(target: pg.Client, migration: string, tables: TableInfo[], units: WorkUnit[]): Promise<void> {
  await target.query('BEGIN');
  try {
    await target.query('DELETE FROM pgferry.units WHERE migration = $1', [migration]);
    await target.query('DELETE FROM pgferry.tables WHERE migration = $1', [migration]);
    for (const table of dataTables(tables)) {
      const target_ = targetOf(table);
      await target.query(
        `INSERT INTO pgferry.tables (migration, source_schema, source_table, target_schema, target_table, estimated_rows, estimated_bytes, units_total)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`,
        [
          migration,
          table.schema,
          table.name,
          target_.schema,
          target_.name,
          Math.round(table.estimatedRows),
          table.bytes,
          units.filter((u) => u.source.schema === table.schema && u.source.name === table.name).length,
        ],
      );
    }
    for (const unit of units) {
      await target.query(
        `INSERT INTO pgferry.units (migration, id, source_schema, source_table, target_schema, target_table, columns, where_clause,
                                    from_page, to_page, binary_format, owns_table, estimated_bytes)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)`,
        [
          migration,
          unit.id,
          unit.source.schema,
          unit.source.name,
          unit.target.schema,
          unit.target.name,
          unit.columns,
          unit.where ?? null,
          unit.fromPage ?? null,
          unit.toPage ?? null,
          unit.binaryFormat,
          unit.freeze,
          unit.estimatedBytes,
        ],
      );
      await target.query('INSERT INTO pgferry.unit_progress (migration, id) VALUES ($1, $2)', [migration, unit.id]);
    }
    await target.query('COMMIT');
  } catch (error) {
    await target.query('ROLLBACK').catch(() => undefined);
    throw error;
  }
}

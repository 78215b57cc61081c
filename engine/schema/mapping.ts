/**
 * Name mapping (the spec's `mapping`): where each source schema, table and column lands on the
 * target. Pure; the rename itself is in apply-mapping.ts, the checks in precheck/mapping.ts.
 *
 * Explicit names are taken as written; every other name of a table, a column, a view, a sequence,
 * an index or a constraint gets `nameCase`. A name PostgreSQL derived from its table's
 * (`orders_pkey`, `orders_id_seq`, `orders_customer_id_idx`) follows the table's new name.
 */
import { Buffer } from 'node:buffer';
import { parseTableKey, tableKey, type TableRef } from '../catalog/tables.js';
import type { MigrationSpec } from '../spec/index.js';

export type MappingSpec = MigrationSpec['mapping'];
export type NameCase = MappingSpec['nameCase'];

/** The longest identifier PostgreSQL keeps (NAMEDATALEN - 1), in bytes. */
export const MAX_NAME_BYTES = 63;

export const nameBytes = (name: string) => Buffer.byteLength(name, 'utf8');

/** `name` cut to at most `bytes` bytes of UTF-8 without splitting a character, as PostgreSQL truncates identifiers. */
export function truncateName(name: string, bytes = MAX_NAME_BYTES): string {
  if (nameBytes(name) <= bytes) return name;
  let out = '';
  for (const char of name) {
    if (nameBytes(out + char) > bytes) break;
    out += char;
  }
  return out;
}

export function applyCase(name: string, nameCase: NameCase): string {
  if (nameCase === 'lower') return name.toLowerCase();
  if (nameCase === 'upper') return name.toUpperCase();
  return name;
}

/** Where a stream's tables and columns go: the spec's mapping (NameMap), or its inverse for the reverse stream. */
export interface Names {
  readonly identity: boolean;
  table(ref: TableRef): TableRef;
  column(table: TableRef, name: string): string;
}

export class NameMap implements Names {
  /** True when no name changes: the target's names are the source's. */
  readonly identity: boolean;
  private readonly schemas: Map<string, string>;
  private readonly tables: Map<string, string>;
  private readonly columns: Map<string, Map<string, string>>;
  /** Partitions' partitioned tables, by the partition's key: a partition's columns are its root's. */
  private roots = new Map<string, TableRef>();

  static readonly IDENTITY = new NameMap({ schemas: {}, tables: {}, columns: {}, nameCase: 'source' });

  constructor(readonly spec: MappingSpec) {
    this.schemas = new Map(Object.entries(spec.schemas));
    this.tables = new Map(Object.entries(spec.tables).map(([key, name]) => [tableKey(parseTableKey(key)), name]));
    this.columns = new Map(Object.entries(spec.columns).map(([key, columns]) => [tableKey(parseTableKey(key)), new Map(Object.entries(columns))]));
    this.identity =
      spec.nameCase === 'source' &&
      [...this.schemas].every(([from, to]) => from === to) &&
      [...this.tables].every(([key, to]) => parseTableKey(key).name === to) &&
      [...this.columns.values()].every((columns) => [...columns].every(([from, to]) => from === to));
  }

  /** The spec's mapping; `tables` (catalog/tables.ts's, with their roots) lets a partition's columns follow its root's. */
  static of(spec: Pick<MigrationSpec, 'mapping'>, tables: readonly (TableRef & { root?: TableRef })[] = []): NameMap {
    const names = new NameMap(spec.mapping);
    names.roots = new Map(tables.filter((t) => t.root).map((t) => [tableKey(t), t.root!]));
    return names;
  }

  schema(name: string): string {
    return this.schemas.get(name) ?? applyCase(name, this.spec.nameCase);
  }

  /** Where a table (or a view, a sequence) of the source lands. */
  table(ref: TableRef): TableRef {
    return { schema: this.schema(ref.schema), name: this.tables.get(tableKey(ref)) ?? applyCase(ref.name, this.spec.nameCase) };
  }

  column(table: TableRef, name: string): string {
    const owner = this.roots.get(tableKey(table)) ?? table;
    return this.columns.get(tableKey(owner))?.get(name) ?? applyCase(name, this.spec.nameCase);
  }

  /** A relation or constraint named after its table: the table's part follows the table's new name, the rest gets nameCase. */
  derived(table: TableRef, name: string): string {
    const target = this.table(table).name;
    const rest = name.startsWith(`${table.name}_`) ? name.slice(table.name.length) : undefined;
    return truncateName(rest === undefined ? applyCase(name, this.spec.nameCase) : target + applyCase(rest, this.spec.nameCase));
  }

  /** Every table key and column the spec's mapping names, to check that each names something selected. */
  explicit(): { schemas: string[]; tables: TableRef[]; columns: { table: TableRef; column: string }[] } {
    return {
      schemas: [...this.schemas.keys()],
      tables: [...this.tables.keys()].map(parseTableKey),
      columns: [...this.columns].flatMap(([key, columns]) => [...columns.keys()].map((column) => ({ table: parseTableKey(key), column }))),
    };
  }
}

/**
 * The names the target's objects have now: the spec's mapping once apply-mapping.ts has renamed
 * them, the source's before (while the load and post-data run on them).
 */
export function namesNow(spec: Pick<MigrationSpec, 'mapping'>, mapped: boolean, tables: readonly (TableRef & { root?: TableRef })[] = []): NameMap {
  return mapped ? NameMap.of(spec, tables) : NameMap.IDENTITY;
}

/** Same table, mapped: the target's names of a source table and of some of its columns, in the same order. */
export function mappedColumns(names: NameMap, table: TableRef, columns: readonly string[]): string[] {
  return columns.map((c) => names.column(table, c));
}

/**
 * The mapping the other way, for the reverse stream (target → source): built from the source's
 * tables, each target table and column back to its source name.
 */
export class InverseNames implements Names {
  readonly identity: boolean;
  private readonly tables = new Map<string, TableRef>();
  private readonly columns = new Map<string, Map<string, string>>();

  constructor(names: NameMap, sourceTables: readonly (TableRef & { columns: readonly { name: string }[] })[]) {
    this.identity = names.identity;
    for (const table of sourceTables) {
      const source = { schema: table.schema, name: table.name };
      const key = tableKey(names.table(source));
      this.tables.set(key, source);
      this.columns.set(key, new Map(table.columns.map((c) => [names.column(source, c.name), c.name])));
    }
  }

  table(ref: TableRef): TableRef {
    return this.tables.get(tableKey(ref)) ?? ref;
  }

  column(table: TableRef, name: string): string {
    return this.columns.get(tableKey(table))?.get(name) ?? name;
  }
}

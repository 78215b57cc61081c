import { describe, expect, it } from 'vitest';
import type { ColumnInfo, TableInfo } from '../../engine/catalog/tables.js';
import { planUnits, type TargetFacts } from '../../engine/load/planner.js';
import { migrationSpecSchema, type MigrationSpecInput } from '../../engine/spec/index.js';

const PG14 = 140000;
const MB = 1024 * 1024;

const column = (name: string, type = 'integer', extra: Partial<ColumnInfo> = {}): ColumnInfo => ({
  name,
  type,
  typeOid: 23,
  builtinType: true,
  notNull: false,
  generated: false,
  identity: null,
  ...extra,
});

function table(name: string, extra: Partial<TableInfo> = {}): TableInfo {
  return {
    schema: 'shop',
    name,
    oid: 1,
    kind: 'table',
    columns: [column('id'), column('note', 'text')],
    primaryKey: ['id'],
    replicaIdentity: 'default',
    estimatedRows: 1000,
    bytes: MB,
    pages: 128,
    ...extra,
  };
}

/** The target has every table with the source's column types, unless told otherwise. */
function facts(tables: TableInfo[], overrides: Record<string, Record<string, string>> = {}, referenced: string[] = []): TargetFacts {
  const columnTypes = new Map(
    tables.map((t) => {
      const key = `${t.schema}.${t.name}`;
      return [key, new Map(t.columns.map((c) => [c.name, overrides[key]?.[c.name] ?? c.type]))];
    }),
  );
  return { columnTypes, referenced: new Set(referenced) };
}

function spec(extra: Partial<MigrationSpecInput> = {}) {
  return migrationSpecSchema.parse({ name: 'plan', source: { secret: 'env:S' }, target: { secret: 'env:T' }, ...extra });
}

describe('planUnits', () => {
  it('plans one unit per table, owning it (TRUNCATE and COPY FREEZE), biggest first, ids from 1', () => {
    const tables = [table('small', { bytes: MB }), table('big', { bytes: 5 * MB })];
    const units = planUnits({ tables, target: facts(tables), spec: spec(), sourceVersionNum: PG14 });
    expect(units.map((u) => [u.id, u.source.name, u.freeze, u.estimatedBytes])).toEqual([
      [1, 'big', true, 5 * MB],
      [2, 'small', true, MB],
    ]);
    expect(units[0]).toMatchObject({
      source: { schema: 'shop', name: 'big' },
      target: { schema: 'shop', name: 'big' },
      columns: ['id', 'note'],
      binaryFormat: true,
    });
    expect(units[0]!.fromPage).toBeUndefined();
    expect(units[0]!.toPage).toBeUndefined();
  });

  it('splits a table larger than the threshold into ctid page ranges that cover it once, the last one open-ended', () => {
    const tables = [table('big', { bytes: 10 * MB, pages: 1000 })];
    const units = planUnits({ tables, target: facts(tables), spec: spec({ fullLoad: { splitTablesLargerThan: 3 * MB } }), sourceVersionNum: PG14 });
    expect(units).toHaveLength(4);
    const ranges = units.map((u) => [u.fromPage, u.toPage]).sort((a, b) => a[0]! - b[0]!);
    expect(ranges).toEqual([
      [0, 250],
      [250, 500],
      [500, 750],
      [750, undefined],
    ]);
    // Parts share the table: none may truncate it or freeze its rows.
    expect(units.every((u) => !u.freeze)).toBe(true);
    expect(units.reduce((sum, u) => sum + u.estimatedBytes, 0)).toBe(10 * MB);
    expect(units.map((u) => u.id).sort()).toEqual([1, 2, 3, 4]);
  });

  it('gives a shorter last range its share of the bytes', () => {
    const tables = [table('big', { bytes: 10 * MB, pages: 10 })];
    const units = planUnits({ tables, target: facts(tables), spec: spec({ fullLoad: { splitTablesLargerThan: 3 * MB } }), sourceVersionNum: PG14 });
    // 4 pieces of ceil(10 / 4) = 3 pages: 3, 3, 3 and 1.
    expect(units.map((u) => [u.fromPage, u.toPage, u.estimatedBytes])).toEqual([
      [0, 3, 3 * MB],
      [3, 6, 3 * MB],
      [6, 9, 3 * MB],
      [9, undefined, MB],
    ]);
  });

  it('does not split at or below the threshold, a one-page table, or a source before PostgreSQL 14', () => {
    const atThreshold = [table('t', { bytes: 3 * MB })];
    const split = { fullLoad: { splitTablesLargerThan: 3 * MB } };
    expect(planUnits({ tables: atThreshold, target: facts(atThreshold), spec: spec(split), sourceVersionNum: PG14 })).toHaveLength(1);
    const onePage = [table('t', { bytes: 10 * MB, pages: 1 })];
    expect(planUnits({ tables: onePage, target: facts(onePage), spec: spec(split), sourceVersionNum: PG14 })).toHaveLength(1);
    const big = [table('t', { bytes: 10 * MB, pages: 1000 })];
    const [only, ...rest] = planUnits({ tables: big, target: facts(big), spec: spec(split), sourceVersionNum: 130015 });
    expect(rest).toHaveLength(0);
    expect(only).toMatchObject({ freeze: true, estimatedBytes: 10 * MB });
  });

  it('copies in binary only when every column is a built-in type of the same type on the target', () => {
    const plain = table('plain');
    const custom = table('custom', { columns: [column('id'), column('state', 'shop.state', { builtinType: false })] });
    const retyped = table('retyped');
    const tables = [plain, custom, retyped];
    const units = planUnits({
      tables,
      target: facts(tables, { 'shop.retyped': { note: 'character varying(20)' } }),
      spec: spec(),
      sourceVersionNum: PG14,
    });
    expect(Object.fromEntries(units.map((u) => [u.source.name, u.binaryFormat]))).toEqual({ plain: true, custom: false, retyped: false });
  });

  it('applies the table options: where filter and the columns copied; generated columns are never copied', () => {
    const orders = table('orders', { columns: [column('id'), column('note', 'text'), column('secret', 'text'), column('total', 'numeric', { generated: true })] });
    const units = planUnits({
      tables: [orders],
      target: facts([orders]),
      spec: spec({ objects: { tables: { 'shop.orders': { where: 'id > 10', excludeColumns: ['secret'] } } } }),
      sourceVersionNum: PG14,
    });
    expect(units).toHaveLength(1);
    expect(units[0]).toMatchObject({ where: 'id > 10', columns: ['id', 'note'] });
  });

  it('does not own a table another table references, nor any table with existingTables: ignore', () => {
    const tables = [table('customers'), table('orders')];
    const referenced = planUnits({ tables, target: facts(tables, {}, ['shop.customers']), spec: spec(), sourceVersionNum: PG14 });
    expect(Object.fromEntries(referenced.map((u) => [u.source.name, u.freeze]))).toEqual({ customers: false, orders: true });
    const ignoring = planUnits({ tables, target: facts(tables), spec: spec({ schema: { existingTables: 'ignore' } }), sourceVersionNum: PG14 });
    expect(ignoring.every((u) => !u.freeze)).toBe(true);
  });

  it('copies partitions (with their root table options), not partitioned parents', () => {
    const root = { schema: 'shop', name: 'events' };
    const parent = table('events', { kind: 'partitioned', bytes: 0, pages: 0 });
    const partition = table('events_2024', { root });
    const tables = [parent, partition];
    const units = planUnits({
      tables,
      target: facts(tables),
      spec: spec({ objects: { tables: { 'shop.events': { where: "kind <> 'debug'" } } } }),
      sourceVersionNum: PG14,
    });
    expect(units.map((u) => [u.source.name, u.where])).toEqual([['events_2024', "kind <> 'debug'"]]);
  });

  it('fails on a table missing on the target', () => {
    const tables = [table('gone')];
    expect(() => planUnits({ tables, target: facts([]), spec: spec(), sourceVersionNum: PG14 })).toThrow('Table shop.gone does not exist on the target.');
  });
});

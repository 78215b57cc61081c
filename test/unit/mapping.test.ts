import { describe, expect, it } from 'vitest';
import { InverseNames, NameMap, truncateName } from '../../engine/schema/mapping.js';
import { nameKey, planMapping, type CatalogRelation } from '../../engine/schema/mapping-plan.js';

const mapping = (over: Partial<NameMap['spec']> = {}) => new NameMap({ schemas: {}, tables: {}, columns: {}, nameCase: 'source', ...over });

const relation = (schema: string, name: string, over: Partial<CatalogRelation> = {}): CatalogRelation => ({
  oid: Math.floor(Math.random() * 1e9),
  schema,
  name,
  kind: 'r',
  parent: null,
  columns: [{ name: 'id', inherited: false }],
  indexes: [],
  constraints: [],
  sequences: [],
  ...over,
});

describe('NameMap', () => {
  it('takes explicit names as written and gives every other name nameCase', () => {
    const names = mapping({ schemas: { App: 'sales' }, tables: { 'App.Orders': 'OrderItems' }, columns: { 'App.Orders': { CustomerId: 'customer' } }, nameCase: 'lower' });
    expect(names.identity).toBe(false);
    expect(names.table({ schema: 'App', name: 'Orders' })).toEqual({ schema: 'sales', name: 'OrderItems' });
    expect(names.table({ schema: 'App', name: 'Customers' })).toEqual({ schema: 'sales', name: 'customers' });
    expect(names.table({ schema: 'Other', name: 'T' })).toEqual({ schema: 'other', name: 't' });
    expect(names.column({ schema: 'App', name: 'Orders' }, 'CustomerId')).toBe('customer');
    expect(names.column({ schema: 'App', name: 'Orders' }, 'Note')).toBe('note');
    // Derived from the table's name: the table's part follows it, the rest gets nameCase.
    expect(names.derived({ schema: 'App', name: 'Orders' }, 'Orders_CustomerId_idx')).toBe('OrderItems_customerid_idx');
    expect(names.derived({ schema: 'App', name: 'Orders' }, 'IdxBySomething')).toBe('idxbysomething');
    expect(mapping().identity).toBe(true);
    expect(mapping({ schemas: { a: 'a' }, tables: { 'a.t': 't' } }).identity).toBe(true);
  });

  it("maps a partition's columns as its partitioned table's", () => {
    const names = NameMap.of({ mapping: { schemas: {}, tables: {}, columns: { 'p.root': { a: 'b' } }, nameCase: 'source' } }, [
      { schema: 'p', name: 'leaf', root: { schema: 'p', name: 'root' } },
    ]);
    expect(names.column({ schema: 'p', name: 'leaf' }, 'a')).toBe('b');
  });

  it('goes back from target names to source names for the reverse stream', () => {
    const names = mapping({ schemas: { App: 'sales' }, columns: { 'App.Orders': { CustomerId: 'customer' } }, nameCase: 'lower' });
    const inverse = new InverseNames(names, [{ schema: 'App', name: 'Orders', columns: [{ name: 'id' }, { name: 'CustomerId' }] }]);
    expect(inverse.table({ schema: 'sales', name: 'orders' })).toEqual({ schema: 'App', name: 'Orders' });
    expect(inverse.column({ schema: 'sales', name: 'orders' }, 'customer')).toBe('CustomerId');
  });

  it('cuts names to 63 bytes without splitting a character', () => {
    expect(truncateName('é'.repeat(40))).toBe('é'.repeat(31));
    expect(Buffer.byteLength(truncateName('é'.repeat(40)))).toBe(62);
  });
});

describe('planMapping', () => {
  it('renames through temporary names, so names swapped between tables never meet', () => {
    const names = mapping({ tables: { 's.a': 'b', 's.b': 'a' } });
    const plan = planMapping([relation('s', 'a'), relation('s', 'b')], names, new Map());
    expect(plan.problems).toEqual([]);
    const temporary = plan.statements.filter((s) => /RENAME TO "pgferry_[0-9a-f]+_\d+"$/.test(s));
    expect(temporary).toHaveLength(2);
    expect(plan.statements.slice(-2).map((s) => s.replace(/"pgferry_[0-9a-f]+_\d+"/, 'TMP'))).toEqual([
      'ALTER TABLE "s".TMP RENAME TO "b"',
      'ALTER TABLE "s".TMP RENAME TO "a"',
    ]);
  });

  it('moves tables between schemas with their indexes and owned sequences, numbering a derived name that is taken', () => {
    const names = mapping({ schemas: { east: 'shop', west: 'shop' } });
    const plan = planMapping(
      [relation('east', 'items', { indexes: ['items_pkey', 'by_v'] }), relation('west', 'stock', { indexes: ['stock_pkey', 'by_v'], sequences: [{ name: 'stock_id_seq', column: 'id' }] })],
      names,
      new Map(),
    );
    expect(plan.problems).toEqual([]);
    expect(plan.statements.filter((s) => s.includes('SET SCHEMA')).map((s) => s.replace(/"pgferry_[0-9a-f]+_\d+"/, 'TMP'))).toEqual([
      'ALTER TABLE "east".TMP SET SCHEMA "shop"',
      'ALTER TABLE "west".TMP SET SCHEMA "shop"',
    ]);
    expect(plan.renames.filter((r) => r.numbered)).toEqual([{ kind: 'index', from: { schema: 'west', name: 'by_v' }, to: { schema: 'shop', name: 'by_v1' }, numbered: true }]);
    expect(plan.targetSchemas).toEqual(['shop']);
  });

  it('lists every collision and every name over 63 bytes', () => {
    const long = 'n'.repeat(64);
    const names = mapping({ schemas: { a: 'one', b: 'one' }, tables: { 'a.long': long }, nameCase: 'lower' });
    const plan = planMapping(
      [
        relation('a', 't', { columns: [{ name: 'X', inherited: false }, { name: 'x', inherited: false }] }),
        relation('b', 't'),
        relation('a', 'long'),
        relation('a', 'taken'),
      ],
      names,
      new Map([[nameKey('one', 'taken'), 1]]),
    );
    expect(plan.problems).toEqual(
      expect.arrayContaining([
        'columns X and x of a.t would both be named x',
        'table b.t would be named one.t, which table a.t already has',
        `table a.long would be named "${long}", which is 64 bytes: PostgreSQL keeps at most 63`,
        'table a.taken would be named one.taken, which the target already has',
      ]),
    );
    expect(plan.problems).toHaveLength(4);
  });

  it('names a serial sequence after its table and column once they are renamed', () => {
    const names = mapping({ tables: { 's.orders': 'order_items' }, columns: { 's.orders': { customer_id: 'customer' } } });
    const orders = relation('s', 'orders', {
      columns: [{ name: 'customer_id', inherited: false }],
      sequences: [{ name: 'orders_customer_id_seq', column: 'customer_id' }, { name: 'odd_name', column: 'customer_id' }],
    });
    const plan = planMapping([orders], names, new Map());
    expect(plan.renames.filter((r) => r.kind === 'sequence').map((r) => r.to.name)).toEqual(['order_items_customer_seq']);
  });

  it("renames a partitioned table's columns once, on the partitioned table", () => {
    const names = mapping({ columns: { 'p.root': { a: 'b' } } });
    const root = relation('p', 'root', { kind: 'p', columns: [{ name: 'a', inherited: false }] });
    const leaf = relation('p', 'leaf', { parent: root.oid, columns: [{ name: 'a', inherited: true }] });
    const plan = planMapping([root, leaf], names, new Map());
    expect(plan.statements.filter((s) => s.includes('RENAME COLUMN') && s.endsWith('"b"'))).toEqual([expect.stringMatching(/^ALTER TABLE "p"."root" RENAME COLUMN/)]);
  });
});

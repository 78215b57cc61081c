import { createHash } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  compareTable,
  compareTables,
  describeMismatches,
  type CompareTarget,
  type RowDifference,
  type TableComparison,
} from '../../engine/compare/index.js';
import { beginMigration, ensureControlSchema, saveComparison } from '../../engine/control/index.js';
import { startClusters, type LocalCluster } from '../../local/dev/cluster.js';

let source: LocalCluster;
let target: LocalCluster;

/** The same tables and rows, with awkward types and values, in `schema`. */
const fixture = (schema: string) => `
CREATE SCHEMA ${schema};
CREATE TYPE ${schema}.status AS ENUM ('new', 'paid', 'shipped');
CREATE TABLE ${schema}.items (
  id int PRIMARY KEY, f float8, n numeric, ts timestamptz, iv interval, b bytea, j jsonb, tags text[], st ${schema}.status, note text);
INSERT INTO ${schema}.items
SELECT g,
       CASE g % 1000 WHEN 1 THEN 'NaN'::float8 WHEN 2 THEN 'Infinity' WHEN 3 THEN '-Infinity' WHEN 4 THEN '-0'
                     WHEN 5 THEN 1e-308 WHEN 6 THEN NULL ELSE g / 7.0::float8 END,
       CASE WHEN g % 11 = 0 THEN NULL ELSE g * 1.0001 + 0.123456789012345678 END,
       timestamptz '2024-02-29 12:34:56.123456+05:30' + g * interval '1 minute 0.000001 sec',
       interval '1 year 2 mons 3 days 04:05:06.789' * (g % 5) - interval '0.000001 sec',
       CASE WHEN g % 13 = 0 THEN NULL ELSE decode(lpad(to_hex(g), 8, '0'), 'hex') || '\\x00ff'::bytea END,
       jsonb_build_object('g', g, 'f', g / 3.0, 'a', jsonb_build_array(1, 'x', NULL, 2.50)),
       ARRAY['a', 'b c', NULL, g::text],
       (enum_range(NULL::${schema}.status))[g % 3 + 1],
       CASE WHEN g % 2 = 0 THEN NULL ELSE 'note ' || g END
  FROM generate_series(1, 20000) g;
CREATE TABLE ${schema}.lines (region text, n int, qty numeric(12,2), at timestamptz, PRIMARY KEY (region, n));
INSERT INTO ${schema}.lines
SELECT r, n, n * 1.5, timestamptz '2020-01-01 00:00:00.5+00' + n * interval '1 hour'
  FROM unnest(ARRAY['eu', 'us', 'ap', 'é x']) r, generate_series(1, 500) n;
CREATE TABLE ${schema}.tokens (id uuid PRIMARY KEY, owner int, payload jsonb);
INSERT INTO ${schema}.tokens SELECT md5('t' || g)::uuid, g, jsonb_build_object('k', g) FROM generate_series(1, 3000) g;
CREATE TABLE ${schema}.log (at timestamptz, level text, message text, amount float8);
INSERT INTO ${schema}.log
SELECT timestamptz '2021-06-01 10:00:00+00' + (g % 500) * interval '1 second', 'info', 'm' || (g % 500), g % 500 / 3.0::float8
  FROM generate_series(1, 2000) g;`;

const both = (sql: string) => Promise.all([source.sql(sql), target.sql(sql)]);

const tableList = (schema: string, targetSchema = schema): CompareTarget[] =>
  [
    { name: 'items', columns: ['id', 'f', 'n', 'ts', 'iv', 'b', 'j', 'tags', 'st', 'note'], primaryKey: ['id'] },
    { name: 'lines', columns: ['region', 'n', 'qty', 'at'], primaryKey: ['region', 'n'] },
    { name: 'tokens', columns: ['id', 'owner', 'payload'], primaryKey: ['id'] },
    { name: 'log', columns: ['at', 'level', 'message', 'amount'], primaryKey: null },
  ].map(({ name, ...rest }) => ({ source: { schema, name }, target: { schema: targetSchema, name }, ...rest }));

const options = { method: 'checksum' as const, chunkRows: 100_000, maxDifferences: 100, parallelism: 2 };
const run = (tables: CompareTarget[], extra: Partial<Parameters<typeof compareTables>[3]> = {}) =>
  compareTables(() => source.connect(), () => target.connect(), tables, { ...options, ...extra });

const byName = (results: TableComparison[]) => Object.fromEntries(results.map((r) => [r.source.name, r]));
const sorted = (diffs: RowDifference[]) => [...diffs].sort((a, b) => JSON.stringify(a).localeCompare(JSON.stringify(b)));
const tokenId = (owner: number) => createHash('md5').update(`t${owner}`).digest('hex').replace(/^(.{8})(.{4})(.{4})(.{4})(.{12})$/, '$1-$2-$3-$4-$5');

beforeAll(async () => {
  [source, target] = await startClusters([{ major: 15, label: 'compare-src' }, { major: 17, label: 'compare-tgt' }]);
  await both(['same', 'changed', 'snap', 'filt'].map(fixture).join('\n'));
  await target.sql(`
    UPDATE changed.items SET f = f + 1 WHERE id = 7;
    DELETE FROM changed.items WHERE id = 5000;
    INSERT INTO changed.items (id, note) VALUES (25000, 'above'), (0, 'below');
    UPDATE changed.lines SET qty = qty + 0.01 WHERE region = 'eu' AND n = 3;
    DELETE FROM changed.lines WHERE region = 'us' AND n = 500;
    INSERT INTO changed.lines VALUES ('zz', 1, 1, now());
    DELETE FROM changed.tokens WHERE owner = 42;
    DELETE FROM changed.log WHERE ctid = (SELECT ctid FROM changed.log WHERE message = 'm7' LIMIT 1);
    ALTER TABLE filt.items RENAME TO items_even;
    DELETE FROM filt.items_even WHERE id % 2 = 1;`);
});

afterAll(async () => {
  await Promise.all([source, target].map((c) => c?.stop()));
});

const changedItems = [
  { key: { id: '7' }, kind: 'different' },
  { key: { id: '5000' }, kind: 'missing' },
  { key: { id: '0' }, kind: 'extra' },
  { key: { id: '25000' }, kind: 'extra' },
];

describe('compare on real clusters (PG 15 → PG 17)', () => {
  it('finds identical tables identical, in one range and in many', async () => {
    const seen: string[] = [];
    const results = await run(tableList('same'), { onTable: (r) => seen.push(r.source.name) });
    expect(results.map((r) => [r.source.name, r.status, r.sourceRows, r.targetRows])).toEqual([
      ['items', 'match', 20000, 20000],
      ['lines', 'match', 2000, 2000],
      ['tokens', 'match', 3000, 3000],
      ['log', 'match', 2000, 2000],
    ]);
    expect(seen.sort()).toEqual(['items', 'lines', 'log', 'tokens']);
    const chunked = byName(await run(tableList('same'), { chunkRows: 1000 }));
    expect(chunked.items).toMatchObject({ status: 'match', ranges: 20, mismatchedRanges: 0, differences: [] });
    expect(chunked.lines).toMatchObject({ status: 'match', ranges: 2 });
    expect(describeMismatches(Object.values(chunked))).toBe('');
  });

  it('lists a changed, a missing and extra rows below and above every source key', async () => {
    const [single] = await run(tableList('changed').slice(0, 1));
    expect(single).toMatchObject({ status: 'mismatch', sourceRows: 20000, targetRows: 20001, ranges: 1, mismatchedRanges: 1 });
    expect(sorted(single!.differences)).toEqual(sorted(changedItems as RowDifference[]));

    const [chunked] = await run(tableList('changed').slice(0, 1), { chunkRows: 1000 });
    // Ranges [-∞, 1001) (ids 0 and 7), [4001, 5001) (id 5000) and [19001, ∞) (id 25000).
    expect(chunked).toMatchObject({ status: 'mismatch', ranges: 20, mismatchedRanges: 3 });
    expect(sorted(chunked!.differences)).toEqual(sorted(changedItems as RowDifference[]));
    expect(describeMismatches([chunked!])).toBe('changed.items: 4 rows differ (different: id=7; missing: id=5000; extra: id=0, id=25000)');
  });

  it('identifies composite and uuid keys, and says why a table without a key cannot be narrowed', async () => {
    const results = byName(await run(tableList('changed'), { chunkRows: 1000 }));
    expect(results.lines).toMatchObject({ status: 'mismatch', sourceRows: 2000, targetRows: 2000 });
    expect(sorted(results.lines!.differences)).toEqual(
      sorted([
        { key: { region: 'eu', n: '3' }, kind: 'different' },
        { key: { region: 'us', n: '500' }, kind: 'missing' },
        { key: { region: 'zz', n: '1' }, kind: 'extra' },
      ]),
    );
    expect(results.tokens).toMatchObject({ status: 'mismatch', ranges: 3, mismatchedRanges: 1, differences: [{ key: { id: tokenId(42) }, kind: 'missing' }] });
    expect(results.log).toMatchObject({
      status: 'mismatch',
      sourceRows: 2000,
      targetRows: 1999,
      ranges: 1,
      mismatchedRanges: 1,
      differences: [],
      note: 'rows cannot be identified without a primary key',
    });
    expect(describeMismatches(Object.values(results)).split('\n')).toEqual([
      'changed.items: 4 rows differ (different: id=7; missing: id=5000; extra: id=0, id=25000)',
      'changed.lines: 3 rows differ (different: (region=eu, n=3); missing: (region=us, n=500); extra: (region=zz, n=1))',
      `changed.tokens: 1 row differs (missing: id=${tokenId(42)})`,
      'changed.log: 2000 rows on the source, 1999 on the target; rows cannot be identified without a primary key',
    ]);
  });

  it('stops listing at maxDifferences but still counts mismatched ranges', async () => {
    const [items] = await run(tableList('changed').slice(0, 1), { chunkRows: 1000, maxDifferences: 2 });
    expect(items).toMatchObject({ status: 'mismatch', ranges: 20, mismatchedRanges: 3, note: 'only the first 2 differences are listed' });
    expect(items!.differences).toHaveLength(2);
  });

  it('compares counts only with method count', async () => {
    const results = byName(await run(tableList('changed'), { method: 'count' }));
    expect(results.items).toMatchObject({ method: 'count', status: 'mismatch', sourceRows: 20000, targetRows: 20001, differences: [] });
    // Counts cannot see a changed row, nor one row deleted and another inserted.
    expect(results.lines).toMatchObject({ method: 'count', status: 'match', sourceRows: 2000, targetRows: 2000 });
    expect(describeMismatches([results.items!])).toBe('changed.items: 20000 rows on the source, 20001 on the target');
  });

  it('reads the source at an exported snapshot', async () => {
    const holder = await source.connect();
    try {
      await holder.query('BEGIN ISOLATION LEVEL REPEATABLE READ');
      const { rows } = await holder.query<{ id: string }>('SELECT pg_export_snapshot() AS id');
      await source.sql(`UPDATE snap.items SET note = 'after' WHERE id <= 10; DELETE FROM snap.lines WHERE n = 1;
                        INSERT INTO snap.log VALUES (now(), 'late', 'after', 0)`);
      const at = await run(tableList('snap'), { snapshot: rows[0]!.id, chunkRows: 1000 });
      expect(at.map((r) => r.status)).toEqual(['match', 'match', 'match', 'match']);
      const now = byName(await run(tableList('snap')));
      expect(now.items!.differences).toHaveLength(10);
      expect(now.lines!.differences).toHaveLength(4);
      expect(now.log!.status).toBe('mismatch');
    } finally {
      await holder.end();
    }
  });

  it('rejects a malformed snapshot id before connecting', async () => {
    await expect(run(tableList('same'), { snapshot: "1-2-3'; DROP TABLE x; --" })).rejects.toThrow(/not a snapshot id/);
  });

  it('applies the where filter on the source only', async () => {
    const even: CompareTarget = { ...tableList('filt')[0]!, target: { schema: 'filt', name: 'items_even' }, where: 'id % 2 = 0' };
    const [filtered] = await run([even], { chunkRows: 1000 });
    expect(filtered).toMatchObject({ status: 'match', sourceRows: 10000, targetRows: 10000, ranges: 10 });
    const [unfiltered] = await run([{ ...even, where: undefined }], { maxDifferences: 5 });
    expect(unfiltered).toMatchObject({ status: 'mismatch', sourceRows: 20000, targetRows: 10000, note: 'only the first 5 differences are listed' });
    expect(unfiltered!.differences.every((d) => d.kind === 'missing' && Number(d.key.id) % 2 === 1)).toBe(true);
  });

  it('reads an inheritance parent ONLY: its children are tables of their own', async () => {
    await both(`CREATE SCHEMA inh;
      CREATE TABLE inh.parent (id int PRIMARY KEY, v text); CREATE TABLE inh.kid (extra int) INHERITS (inh.parent);
      CREATE TABLE inh.loose (v text); CREATE TABLE inh.loose_kid () INHERITS (inh.loose);
      INSERT INTO inh.parent SELECT g, 'p' FROM generate_series(1, 10) g; INSERT INTO inh.loose VALUES ('a'), ('b');`);
    // Only the children differ: the parents must still match.
    await target.sql(`INSERT INTO inh.kid VALUES (100, 'k', 1); INSERT INTO inh.loose_kid VALUES ('c')`);
    const tables: CompareTarget[] = [
      { source: { schema: 'inh', name: 'parent' }, target: { schema: 'inh', name: 'parent' }, columns: ['id', 'v'], primaryKey: ['id'] },
      { source: { schema: 'inh', name: 'loose' }, target: { schema: 'inh', name: 'loose' }, columns: ['v'], primaryKey: null },
    ];
    const results = await run(tables);
    expect(results.map((r) => [r.source.name, r.status, r.sourceRows, r.targetRows])).toEqual([
      ['parent', 'match', 10, 10],
      ['loose', 'match', 2, 2],
    ]);
    const counted = await run(tables, { method: 'count' });
    expect(counted.map((r) => r.status)).toEqual(['match', 'match']);
  });

  it('compares one table on caller-owned connections', async () => {
    const [src, tgt] = await Promise.all([source.connect(), target.connect()]);
    try {
      const result = await compareTable(src, tgt, tableList('changed')[0]!, { method: 'checksum', chunkRows: 5000, maxDifferences: 100 });
      // Ranges [-∞, 5001) (ids 0, 7, 5000) and [15001, ∞) (id 25000) of four.
      expect(result).toMatchObject({ status: 'mismatch', ranges: 4, mismatchedRanges: 2 });
      expect(sorted(result.differences)).toEqual(sorted(changedItems as RowDifference[]));
    } finally {
      await Promise.all([src.end(), tgt.end()]);
    }
  });

  it('saves a comparison in the control schema, replacing an earlier one', async () => {
    const tgt = await target.connect();
    try {
      await ensureControlSchema(tgt);
      await beginMigration(tgt, 'compare-test', { mode: 'full' });
      const [result] = await run(tableList('changed').slice(0, 1), { chunkRows: 1000 });
      await saveComparison(tgt, 'compare-test', { ...result!, status: 'match', differences: [] });
      await saveComparison(tgt, 'compare-test', result!);
      const { rows } = await tgt.query('SELECT * FROM pgferry.comparisons WHERE migration = $1', ['compare-test']);
      expect(rows).toHaveLength(1);
      expect(rows[0]).toMatchObject({
        source_schema: 'changed',
        source_table: 'items',
        method: 'checksum',
        status: 'mismatch',
        source_rows: '20000',
        target_rows: '20001',
        ranges: 20,
        mismatched_ranges: 3,
      });
      expect(sorted(rows[0].differences)).toEqual(sorted(changedItems as RowDifference[]));
    } finally {
      await tgt.end();
    }
  });
});

/**
 * Issue 15 item 2: row and column filters under CDC, through the workflow (full+cdc). Rows move
 * into and out of a `where` filter while changes flow; after cutover the target holds exactly
 * the filtered source, with only the selected columns: on a PostgreSQL 13 source (the applier
 * evaluates the filters on the source) and a 15 source (the publication's row filters and column
 * list, and the applier for a filter the publication refuses), there with the left-out columns
 * not created on the target (objects.excludedColumns "drop"). Precheck names a table whose
 * filter lacks old row images with the statement that fixes it.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startClusters, type LocalCluster } from '../../local/dev/cluster.js';
import { runCli } from '../support/cli.js';
import { scratchDir } from '../support/clusters.js';
import { rowsOf, runToCutover } from '../support/cutover-run.js';

let pg13: LocalCluster;
let pg15: LocalCluster;
let target: LocalCluster;
const scratch = scratchDir('cdc-filters');

beforeAll(async () => {
  [pg13, pg15, target] = await startClusters([
    { major: 13, label: 'filters13' },
    { major: 15, label: 'filters15' },
    { major: 17, label: 'filters17' },
  ]);
});

afterAll(async () => {
  await Promise.all([pg13, pg15, target].map((c) => c?.stop()));
  scratch.remove();
});

/**
 * orders: REPLICA IDENTITY FULL, filtered on a non-key column, one column left out.
 * accounts: filtered on a column of its primary key (a row crosses the filter when its key changes).
 * events: filtered through a function of the source's own, which a publication row filter refuses.
 * notes: no filter.
 */
const SCHEMA = `
  CREATE TABLE public.orders (id int PRIMARY KEY, region text NOT NULL, amount numeric(10,2), note text, secret text);
  ALTER TABLE public.orders REPLICA IDENTITY FULL;
  CREATE INDEX orders_secret ON public.orders (secret);
  CREATE TABLE public.accounts (region text, id int, balance int, PRIMARY KEY (region, id));
  CREATE FUNCTION public.is_big(n int) RETURNS boolean LANGUAGE sql IMMUTABLE AS $$ SELECT n >= 100 $$;
  CREATE TABLE public.events (id int PRIMARY KEY, n int, payload text);
  ALTER TABLE public.events REPLICA IDENTITY FULL;
  CREATE TABLE public.notes (id int PRIMARY KEY, body text);
  INSERT INTO public.orders SELECT g, CASE WHEN g % 2 = 0 THEN 'eu' ELSE 'us' END, g * 1.5, 'order ' || g, 'secret ' || g FROM generate_series(1, 200) g;
  INSERT INTO public.accounts SELECT CASE WHEN g % 3 = 0 THEN 'eu' WHEN g % 3 = 1 THEN 'uk' ELSE 'us' END, g, g * 10 FROM generate_series(1, 150) g;
  INSERT INTO public.events SELECT g, g, 'event ' || g FROM generate_series(1, 200) g;
  INSERT INTO public.notes SELECT g, 'note ' || g FROM generate_series(1, 50) g;`;

const FILTERS = {
  'public.orders': { where: "region = 'eu'", excludeColumns: ['secret'] },
  'public.accounts': { where: "region IN ('eu', 'uk')", columns: ['region', 'id'] },
  'public.events': { where: 'public.is_big(n)' },
};

/** Changes crossing the filters both ways, staying inside, staying outside, and deletes on both sides. */
const CHANGES = `
  INSERT INTO public.orders VALUES (1001, 'eu', 1, 'new eu', 's'), (1002, 'us', 2, 'new us', 's');
  UPDATE public.orders SET note = 'stays in' WHERE id IN (2, 4);
  UPDATE public.orders SET region = 'us', note = 'moved out' WHERE id IN (6, 8, 1001);
  UPDATE public.orders SET region = 'eu', note = 'moved in' WHERE id IN (1, 3, 1002);
  UPDATE public.orders SET note = 'stays out' WHERE id IN (5, 7);
  UPDATE public.orders SET secret = 'changed secret' WHERE id IN (10, 11);
  DELETE FROM public.orders WHERE id IN (12, 13);
  BEGIN;
  UPDATE public.orders SET region = 'eu' WHERE id = 15;
  UPDATE public.orders SET region = 'us' WHERE id = 15;
  UPDATE public.orders SET region = 'eu', note = 'in, out, in' WHERE id = 15;
  COMMIT;
  INSERT INTO public.accounts VALUES ('uk', 1001, 1), ('us', 1002, 2);
  UPDATE public.accounts SET balance = balance + 1 WHERE id IN (1, 2, 3);
  UPDATE public.accounts SET region = 'us' WHERE id IN (1, 3);
  UPDATE public.accounts SET region = 'eu' WHERE id IN (2, 1002);
  DELETE FROM public.accounts WHERE id IN (4, 5);
  UPDATE public.events SET n = n + 100 WHERE id IN (1, 2);
  UPDATE public.events SET n = 0 WHERE id IN (150, 151);
  UPDATE public.events SET payload = 'still big' WHERE id = 152;
  UPDATE public.events SET payload = 'still small' WHERE id = 3;
  DELETE FROM public.events WHERE id IN (4, 153);
  INSERT INTO public.events VALUES (1001, 500, 'big'), (1002, 5, 'small');
  UPDATE public.notes SET body = 'edited' WHERE id < 10;`;

/** What the target must hold: the filtered source rows, selected columns only. */
const EXPECTED: Record<string, { source: string; target: string }> = {
  orders: {
    source: "SELECT id, region, amount, note FROM public.orders WHERE region = 'eu' ORDER BY id",
    target: 'SELECT id, region, amount, note FROM public.orders ORDER BY id',
  },
  accounts: {
    source: "SELECT region, id FROM public.accounts WHERE region IN ('eu', 'uk') ORDER BY id",
    target: 'SELECT region, id FROM public.accounts ORDER BY id',
  },
  events: { source: 'SELECT * FROM public.events WHERE n >= 100 ORDER BY id', target: 'SELECT * FROM public.events ORDER BY id' },
  notes: { source: 'SELECT * FROM public.notes ORDER BY id', target: 'SELECT * FROM public.notes ORDER BY id' },
};


function filterSpec(name: string, from: LocalCluster, database: string, extra: Record<string, unknown> = {}) {
  return {
    name,
    mode: 'full+cdc',
    source: { secret: scratch.secretFor(`${name}-source`, from), database },
    target: { secret: scratch.secretFor(`${name}-target`, target), database },
    fullLoad: { parallelism: 2 },
    cdc: { heartbeatTimeoutSeconds: 10 },
    objects: { include: [{ schema: 'public', tables: ['*'] }], tables: FILTERS },
    ...extra,
  };
}


describe('row and column filters under full+cdc', () => {
  it.each([
    ['13', () => pg13, 'the applier evaluates every filter on the source'],
    ['15', () => pg15, 'the publication filters rows and columns where it can, the applier the rest'],
  ])('on a PostgreSQL %s source (%s) the target ends as the filtered source', async (major, cluster) => {
    const source = cluster();
    const database = `filters${major}`;
    const name = `cdc-filters-${major}`;
    await source.sql(`CREATE DATABASE ${database}`);
    await target.sql(`CREATE DATABASE ${database}`);
    await source.sql(SCHEMA, database);

    // On 15 the left-out columns are not created on the target at all (objects.excludedColumns "drop").
    const drop = major === '15';
    const spec = filterSpec(name, source, database);
    if (drop) Object.assign(spec.objects, { excludedColumns: 'drop' });
    let published: unknown[] = [];
    const result = await runToCutover(spec, target, database, async () => {
      if (major === '15') {
        published = await rowsOf(
          source,
          database,
          "SELECT tablename::text AS table, rowfilter IS NOT NULL AS row_filter, attnames::text[] AS columns FROM pg_publication_tables WHERE pubname LIKE 'pgferry%' AND schemaname = 'public' ORDER BY 1",
        );
      }
      await source.sql(CHANGES, database);
    });
    expect(result, JSON.stringify(result)).toMatchObject({ status: 'SUCCEEDED' });

    for (const [table, { source: sourceSql, target: targetSql }] of Object.entries(EXPECTED)) {
      const expected = await rowsOf(source, database, sourceSql);
      expect(expected.length, table).toBeGreaterThan(0);
      expect(await rowsOf(target, database, targetSql), table).toEqual(expected);
    }
    // The rows that crossed the filter under CDC: moved in and inserted, moved out and deleted.
    expect(await rowsOf(target, database, 'SELECT id, note FROM public.orders WHERE id IN (1, 3, 6, 8, 15, 1001, 1002) ORDER BY id')).toEqual([
      { id: 1, note: 'moved in' },
      { id: 3, note: 'moved in' },
      { id: 15, note: 'in, out, in' },
      { id: 1002, note: 'moved in' },
    ]);
    const columns = await rowsOf(
      target,
      database,
      "SELECT table_name::text AS table, array_agg(column_name::text ORDER BY ordinal_position) AS columns FROM information_schema.columns WHERE table_schema = 'public' AND table_name IN ('orders', 'accounts') GROUP BY 1 ORDER BY 1",
    );
    if (drop) {
      expect(columns).toEqual([
        { table: 'accounts', columns: ['region', 'id'] },
        { table: 'orders', columns: ['id', 'region', 'amount', 'note'] },
      ]);
      // The index on the left-out column is not created, and the report says why.
      expect(await rowsOf(target, database, "SELECT to_regclass('public.orders_secret') IS NULL AS absent")).toEqual([{ absent: true }]);
      expect(await rowsOf(target, database, `SELECT kind, status, detail FROM pgferry.schema_objects WHERE migration = '${name}' AND identity = 'public.orders_secret'`)).toEqual([
        { kind: 'index', status: 'skipped', detail: 'uses column(s) "secret" left out of the target (objects.excludedColumns "drop")' },
      ]);
    } else {
      expect(columns).toEqual([
        { table: 'accounts', columns: ['region', 'id', 'balance'] },
        { table: 'orders', columns: ['id', 'region', 'amount', 'note', 'secret'] },
      ]);
      // Left-out columns are not carried: they keep their target default (NULL) however the source changes them.
      expect(await rowsOf(target, database, 'SELECT count(*)::int AS n FROM public.orders WHERE secret IS NOT NULL')).toEqual([{ n: 0 }]);
      expect(await rowsOf(target, database, 'SELECT count(*)::int AS n FROM public.accounts WHERE balance IS NOT NULL')).toEqual([{ n: 0 }]);
    }
    // The comparisons (while replicating, at the cutover request by changed key, behind the fence) read the filtered rows.
    const compared = await rowsOf(target, database, `SELECT source_table AS table, status FROM pgferry.comparisons WHERE migration = '${name}' ORDER BY 1`);
    expect(compared).toEqual(['accounts', 'events', 'notes', 'orders'].map((table) => ({ table, status: 'match' })));

    if (major === '15') {
      expect(published).toEqual([
        // Filtered on its key: a row filter, and the allow-list (which holds the key) as the column list.
        { table: 'accounts', row_filter: true, columns: ['region', 'id'] },
        // A function of the source's own: the publication refuses it as a row filter, the applier evaluates it.
        { table: 'events', row_filter: false, columns: ['id', 'n', 'payload'] },
        { table: 'notes', row_filter: false, columns: ['id', 'body'] },
        // REPLICA IDENTITY FULL: a row filter; the left-out column is published (a column list must hold every column) and not applied.
        { table: 'orders', row_filter: true, columns: ['id', 'region', 'amount', 'note', 'secret'] },
      ]);
    }
  }, 300_000);

  it('fails precheck for a filter on a column outside the key, giving the REPLICA IDENTITY FULL statement to run, and for a view on a dropped column', async () => {
    const database = 'filtersprecheck';
    await pg13.sql(`CREATE DATABASE ${database}`);
    await target.sql(`CREATE DATABASE ${database}`);
    await pg13.sql(
      'CREATE TABLE public.items (id int PRIMARY KEY, region text); CREATE TABLE public.keyed (id int PRIMARY KEY, secret text); CREATE VIEW public.keyed_ids AS SELECT id FROM public.keyed;',
      database,
    );
    const spec = filterSpec('cdc-filters-precheck', pg13, database, {
      objects: { excludedColumns: 'drop', tables: { 'public.items': { where: "region = 'eu'" }, 'public.keyed': { excludeColumns: ['id'] } } },
    });
    const result = await runCli('precheck', scratch.writeJson('precheck.json', spec));
    const output = result.stdout + result.stderr;
    expect(result.code, output).toBe(1);
    expect(output).toMatch(/✗ source\.filter_identity/);
    expect(output).toContain("public.items's where filter reads columns outside its replica identity key (id)");
    expect(output).toContain('ALTER TABLE "public"."items" REPLICA IDENTITY FULL;');
    expect(output).toContain('public.keyed: column(s) "id" are left out but identify its rows');
    // A view on a column that "drop" leaves out of the target could not be created there.
    expect(output).toMatch(/✗ schema\.dropped_columns\s+1 object\(s\) use columns .*view (public\.)?keyed_ids \(uses column id of table (public\.)?keyed\)/);
    // With the statement run, the same spec passes the check.
    await pg13.sql('ALTER TABLE public.items REPLICA IDENTITY FULL; ALTER TABLE public.keyed REPLICA IDENTITY FULL;', database);
    const again = await runCli('precheck', scratch.writeJson('precheck.json', spec));
    expect(again.stdout + again.stderr).toMatch(/✓ source\.filter_identity\s+2 filtered table\(s\) log the old rows/);
  }, 300_000);
});

/**
 * Issue 15 item 1: name mapping through the workflow (full+cdc). Objects are created under the
 * source's names, loaded, and renamed before changes are applied; changes that touch renamed
 * columns, and rows that cross a `where` filter, reach the renamed tables; after cutover the
 * target equals the source through the mapping, views and sequences included. Two source schemas
 * go into one target schema. Precheck lists every collision, name over 63 bytes and name the
 * mapping gives to nothing.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { migrationState, readAfterCutover, readReplicationStatus } from '../../engine/control/index.js';
import { buildReport } from '../../engine/report.js';
import { startClusters, type LocalCluster } from '../../local/dev/cluster.js';
import { runLocalWorkflow, type LocalRunResult } from '../../local/runner/index.js';
import { runCli } from '../support/cli.js';
import { scratchDir } from '../support/clusters.js';
import { rowsOf, runToCutover } from '../support/cutover-run.js';
import { waitFor as waitUntil } from '../support/wait.js';

let source: LocalCluster;
let target: LocalCluster;
const scratch = scratchDir('cdc-mapping');

beforeAll(async () => {
  [source, target] = await startClusters([
    { major: 13, label: 'mapping13' },
    { major: 17, label: 'mapping17' },
  ]);
});

afterAll(async () => {
  await Promise.all([source, target].map((c) => c?.stop()));
  scratch.remove();
});

const waitFor = <T>(what: string, probe: () => Promise<T | undefined | false | null>) => waitUntil(what, probe, 90_000, 100);


function specFor(name: string, database: string, extra: Record<string, unknown>) {
  return {
    name,
    mode: 'full+cdc',
    source: { secret: scratch.secretFor(`${name}-source`, source), database },
    target: { secret: scratch.secretFor(`${name}-target`, target), database },
    fullLoad: { parallelism: 2 },
    cdc: { heartbeatTimeoutSeconds: 10, ddl: 'pause' },
    ...extra,
  };
}


/**
 * "App": mixed-case names everywhere. "Orders" has a serial key, a renamed column with an index,
 * and a check; "Customers" a where filter on a column outside its key (REPLICA IDENTITY FULL); a
 * view reads the orders through a function of the schema, which moves with it.
 */
const SCHEMA = `
  CREATE SCHEMA "App";
  CREATE TABLE "App"."Customers" (id int PRIMARY KEY, "Name" text NOT NULL, "Region" text NOT NULL);
  ALTER TABLE "App"."Customers" REPLICA IDENTITY FULL;
  CREATE TABLE "App"."Orders" (
    id serial PRIMARY KEY,
    "CustomerId" int NOT NULL,
    "Amount" numeric(10,2) NOT NULL CHECK ("Amount" >= 0),
    "Note" text);
  CREATE INDEX ON "App"."Orders" ("CustomerId");
  CREATE FUNCTION "App"."Total"(n numeric) RETURNS numeric LANGUAGE sql IMMUTABLE AS $$ SELECT n * 2 $$;
  CREATE VIEW "App"."BigOrders" AS
    SELECT o.id, o."CustomerId", "App"."Total"(o."Amount") AS "Doubled" FROM "App"."Orders" o WHERE o."Amount" > 100;
  INSERT INTO "App"."Customers" SELECT g, 'customer ' || g, CASE WHEN g % 4 = 0 THEN 'hidden' ELSE 'eu' END FROM generate_series(1, 40) g;
  INSERT INTO "App"."Orders" ("CustomerId", "Amount", "Note") SELECT 1 + (g % 30), g * 1.25, 'order ' || g FROM generate_series(1, 300) g;`;

/** Inserts, updates of a renamed column, deletes, and customers crossing the filter both ways. */
const CHANGES = `
  INSERT INTO "App"."Orders" ("CustomerId", "Amount", "Note") VALUES (2, 500, 'new'), (3, 7, 'small');
  UPDATE "App"."Orders" SET "CustomerId" = 5, "Note" = 'moved' WHERE id IN (10, 11);
  UPDATE "App"."Orders" SET "Amount" = "Amount" + 1000 WHERE id = 12;
  DELETE FROM "App"."Orders" WHERE id IN (20, 21);
  UPDATE "App"."Customers" SET "Region" = 'hidden' WHERE id IN (1, 2);
  UPDATE "App"."Customers" SET "Region" = 'eu', "Name" = 'back in' WHERE id IN (4, 8);
  UPDATE "App"."Customers" SET "Name" = 'renamed inside' WHERE id = 3;
  INSERT INTO "App"."Customers" VALUES (41, 'new in', 'eu'), (42, 'new out', 'hidden');`;

describe('name mapping under full+cdc', () => {
  it('renames a schema, a table and a column, lowers every other name, and ends equal through the mapping', async () => {
    const database = 'mapping';
    const name = 'cdc-mapping';
    await source.sql(`CREATE DATABASE ${database}`);
    await target.sql(`CREATE DATABASE ${database}`);
    await source.sql(SCHEMA, database);
    const spec = specFor(name, database, {
      objects: {
        include: [{ schema: 'App', tables: ['*'] }],
        // The filter of a table whose schema is renamed is written with the source's names.
        tables: { '"App"."Customers"': { where: `"Region" <> 'hidden'` } },
      },
      mapping: { schemas: { App: 'sales' }, tables: { 'App.Orders': 'order_items' }, columns: { 'App.Orders': { CustomerId: 'customer' } }, nameCase: 'lower' },
    });
    const result = await runToCutover(spec, target, database, () => source.sql(CHANGES, database).then(() => undefined));
    expect(result, JSON.stringify(result)).toMatchObject({ status: 'SUCCEEDED' });

    expect(await rowsOf(target, database, `SELECT id, customer, amount, note FROM sales.order_items ORDER BY id`)).toEqual(
      await rowsOf(source, database, `SELECT id, "CustomerId" AS customer, "Amount" AS amount, "Note" AS note FROM "App"."Orders" ORDER BY id`),
    );
    const customers = await rowsOf(source, database, `SELECT id, "Name" AS name, "Region" AS region FROM "App"."Customers" WHERE "Region" <> 'hidden' ORDER BY id`);
    expect(customers.length).toBeGreaterThan(0);
    expect(await rowsOf(target, database, 'SELECT id, name, region FROM sales.customers ORDER BY id')).toEqual(customers);
    // Rows that crossed the filter under CDC: moved out and deleted, moved in and inserted.
    expect(await rowsOf(target, database, 'SELECT id, name FROM sales.customers WHERE id IN (1, 2, 4, 8, 41, 42) ORDER BY id')).toEqual([
      { id: 4, name: 'back in' },
      { id: 8, name: 'back in' },
      { id: 41, name: 'new in' },
    ]);
    // The view follows the renamed table and column (by OID), and still calls the moved function.
    expect(await rowsOf(target, database, 'SELECT id, customerid AS customer, doubled::text AS doubled FROM sales.bigorders ORDER BY id')).toEqual(
      await rowsOf(source, database, 'SELECT id, "CustomerId" AS customer, "Doubled"::text AS doubled FROM "App"."BigOrders" ORDER BY id'),
    );
    // Names on the target: the schema, the tables, columns, index, key, sequence; the source's schema is gone.
    expect(
      await rowsOf(
        target,
        database,
        `SELECT c.relname::text AS name, c.relkind::text AS kind FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'sales' ORDER BY 1`,
      ),
    ).toEqual([
      { name: 'bigorders', kind: 'v' },
      { name: 'customers', kind: 'r' },
      { name: 'customers_pkey', kind: 'i' },
      { name: 'order_items', kind: 'r' },
      { name: 'order_items_customerid_idx', kind: 'i' },
      { name: 'order_items_id_seq', kind: 'S' },
      { name: 'order_items_pkey', kind: 'i' },
    ]);
    expect(await rowsOf(target, database, `SELECT to_regnamespace('"App"') IS NULL AS gone, to_regprocedure('sales."Total"(numeric)') IS NOT NULL AS moved`)).toEqual([
      { gone: true, moved: true },
    ]);
    expect(
      await rowsOf(target, database, `SELECT attname::text AS name FROM pg_attribute WHERE attrelid = 'sales.order_items'::regclass AND attnum > 0 ORDER BY attnum`),
    ).toEqual([{ name: 'id' }, { name: 'customer' }, { name: 'amount' }, { name: 'note' }]);
    expect(
      await rowsOf(target, database, `SELECT conname::text AS name FROM pg_constraint WHERE conrelid = 'sales.order_items'::regclass ORDER BY 1`),
    ).toEqual([{ name: 'order_items_amount_check' }, { name: 'order_items_pkey' }]);
    // The sequence of the renamed table was set at cutover: the next order takes the next number.
    const [{ last }] = (await rowsOf(source, database, `SELECT last_value AS last FROM "App"."Orders_id_seq"`)) as [{ last: string }];
    expect(await rowsOf(target, database, `SELECT nextval('sales.order_items_id_seq')::text AS next`)).toEqual([{ next: String(Number(last) + 1) }]);
    // The comparisons (while replicating, by changed key at the cutover request, behind the fence) read through the mapping.
    expect(await rowsOf(target, database, `SELECT source_table AS table, status FROM pgferry.comparisons WHERE migration = '${name}' ORDER BY 1`)).toEqual([
      { table: 'Customers', status: 'match' },
      { table: 'Orders', status: 'match' },
    ]);
    // The report names what was renamed, and its tables by their target names.
    const control = await target.connect(database);
    const report = await buildReport(control, name).finally(() => control.end());
    expect(report!.tables.map((t) => [t.table, t.target]).sort()).toEqual([
      ['App.Customers', 'sales.customers'],
      ['App.Orders', 'sales.order_items'],
    ]);
    expect(report!.renamed).toEqual(
      expect.arrayContaining([
        { kind: 'table', from: '"App"."Orders"', to: 'sales.order_items' },
        { kind: 'table', from: '"App"."Customers"', to: 'sales.customers' },
        { kind: 'column', from: '"App"."Orders"."CustomerId"', to: 'sales.order_items.customer' },
        { kind: 'view', from: '"App"."BigOrders"', to: 'sales.bigorders' },
        { kind: 'function', from: '"App"."Total"(numeric)', to: 'sales."Total"(numeric)' },
      ]),
    );
  }, 300_000);

  it('puts two source schemas into one target schema', async () => {
    const database = 'manytoone';
    const name = 'cdc-many-to-one';
    await source.sql(`CREATE DATABASE ${database}`);
    await target.sql(`CREATE DATABASE ${database}`);
    await source.sql(
      `CREATE SCHEMA east; CREATE SCHEMA west;
       CREATE TABLE east.items (id int PRIMARY KEY, v text); CREATE TABLE west.items (id int PRIMARY KEY, v text);
       CREATE TABLE east.audit (at int, what text); ALTER TABLE east.audit REPLICA IDENTITY FULL;
       INSERT INTO east.items SELECT g, 'east ' || g FROM generate_series(1, 100) g;
       INSERT INTO west.items SELECT g, 'west ' || g FROM generate_series(1, 80) g;
       INSERT INTO east.audit SELECT g, 'seen' FROM generate_series(1, 10) g;`,
      database,
    );
    const spec = specFor(name, database, {
      objects: { include: [{ schema: 'east', tables: ['*'] }, { schema: 'west', tables: ['*'] }] },
      mapping: { schemas: { east: 'shop', west: 'shop' }, tables: { 'east.items': 'east_items', 'west.items': 'west_items' } },
    });
    const result = await runToCutover(spec, target, database, () =>
      source
        .sql(
          `UPDATE east.items SET v = 'changed' WHERE id < 5; DELETE FROM west.items WHERE id > 70; INSERT INTO west.items VALUES (500, 'new');
           INSERT INTO east.audit VALUES (11, 'later'); DELETE FROM east.audit WHERE at = 1;`,
          database,
        )
        .then(() => undefined),
    );
    expect(result, JSON.stringify(result)).toMatchObject({ status: 'SUCCEEDED' });
    for (const [from, to] of [
      ['east.items', 'shop.east_items'],
      ['west.items', 'shop.west_items'],
      ['east.audit', 'shop.audit'],
    ]) {
      const expected = await rowsOf(source, database, `SELECT * FROM ${from} ORDER BY 1, 2`);
      expect(await rowsOf(target, database, `SELECT * FROM ${to} ORDER BY 1, 2`), to).toEqual(expected);
    }
    // Each key index follows its table's new name: no collision between the two items_pkey.
    expect(await rowsOf(target, database, `SELECT indexrelid::regclass::text AS name FROM pg_index WHERE indrelid IN ('shop.east_items'::regclass, 'shop.west_items'::regclass) ORDER BY 1`)).toEqual([
      { name: 'shop.east_items_pkey' },
      { name: 'shop.west_items_pkey' },
    ]);
    expect(await rowsOf(target, database, `SELECT count(*)::int AS n FROM pg_namespace WHERE nspname IN ('east', 'west')`)).toEqual([{ n: 0 }]);
  }, 300_000);

  it('falls back through the mapping: the reverse stream and the sequences go back under the source names', async () => {
    const database = 'mappingback';
    const name = 'mapping-fallback';
    await source.sql(`CREATE DATABASE ${database}`);
    await target.sql(`CREATE DATABASE ${database}`);
    await source.sql(
      `CREATE SCHEMA "Src"; CREATE TABLE "Src"."Items" (id serial PRIMARY KEY, "Val" text NOT NULL);
       INSERT INTO "Src"."Items" ("Val") SELECT 'item ' || g FROM generate_series(1, 50) g;`,
      database,
    );
    const spec = specFor(name, database, {
      cutover: { fenceSource: true, reverse: true, maxLagSeconds: 5 },
      mapping: { schemas: { Src: 'dst' }, columns: { 'Src.Items': { Val: 'value' } }, nameCase: 'lower' },
    });
    const specFile = scratch.writeJson(`${name}.json`, spec);
    let result: LocalRunResult | undefined;
    const run = runLocalWorkflow(spec).then((r) => (result = r));
    const control = await target.connect(database);
    control.on('error', () => undefined);
    try {
      await waitFor('the streamer to apply', async () => result ?? (await readReplicationStatus(control, name))?.streamingSince);
      expect(result, JSON.stringify(result)).toBeUndefined();
      await source.sql(`INSERT INTO "Src"."Items" ("Val") VALUES ('before cutover')`, database);
      expect((await runCli('cutover', specFile)).code).toBe(0);
      await waitFor('the Reverse phase', async () => (await migrationState(control, name))?.phase === 'reverse');
      // The application writes to the target under the target's names; the reverse stream takes it back.
      await target.sql(
        `INSERT INTO dst.items (value) VALUES ('from target 1'), ('from target 2');
         UPDATE dst.items SET value = 'changed on target' WHERE id = 1;
         DELETE FROM dst.items WHERE id = 2;`,
        database,
      );
      await waitFor('the reverse stream to apply the target’s writes', async () => ((await readAfterCutover(control, name))?.reverse.rowsApplied ?? 0) >= 4);
      const fallback = await runCli('fallback', specFile);
      expect(fallback.stderr).toBe('');
      await run;
      expect(result, JSON.stringify(result)).toMatchObject({ status: 'SUCCEEDED' });
    } finally {
      await control.end();
    }
    // The target is fenced under its mapped names: a new session cannot write there.
    await expect(target.sql(`INSERT INTO dst.items (value) VALUES ('after fallback')`, database)).rejects.toThrow(/read-only|fenced/);
    const back = await rowsOf(source, database, `SELECT id, "Val" AS value FROM "Src"."Items" ORDER BY id`);
    expect(back).toEqual(await rowsOf(target, database, 'SELECT id, value FROM dst.items ORDER BY id'));
    expect(back).toEqual(expect.arrayContaining([{ id: 1, value: 'changed on target' }, { id: 53, value: 'from target 2' }]));
    expect(back).not.toEqual(expect.arrayContaining([expect.objectContaining({ id: 2 })]));
    // Sequences were set back: the source's next id follows the target's last one.
    expect(await rowsOf(source, database, `SELECT last_value::text AS last FROM "Src"."Items_id_seq"`)).toEqual(
      await rowsOf(target, database, 'SELECT last_value::text AS last FROM dst.items_id_seq'),
    );
    expect((await runCli('finish', specFile, '--drop-control')).code).toBe(0);
  }, 300_000);

  it('fails precheck listing every collision, name over 63 bytes and name the mapping gives to nothing, and the staging name in use', async () => {
    const database = 'mappingprecheck';
    await source.sql(`CREATE DATABASE ${database}`);
    await target.sql(`CREATE DATABASE ${database}`);
    await source.sql(
      `CREATE SCHEMA a; CREATE SCHEMA b;
       CREATE TABLE a.t (id int PRIMARY KEY, "X" int, x int); CREATE TABLE b.t (id int PRIMARY KEY);
       CREATE TABLE a.kept (id int PRIMARY KEY);
       CREATE FUNCTION a.f() RETURNS int LANGUAGE sql AS 'SELECT 1'; CREATE FUNCTION b.f() RETURNS int LANGUAGE sql AS 'SELECT 2';`,
      database,
    );
    // The target holds a.kept already, where pgferry would load the source's a.kept before renaming it.
    await target.sql('CREATE SCHEMA a; CREATE TABLE a.kept (id int);', database);
    const long = 'x'.repeat(64);
    const spec = specFor('mapping-precheck', database, {
      objects: { include: [{ schema: 'a', tables: ['*'] }, { schema: 'b', tables: ['*'] }] },
      mapping: {
        schemas: { a: 'one', b: 'one', nope: 'other' },
        tables: { 'a.kept': long, 'a.missing': 'm' },
        columns: { 'a.t': { ghost: 'g' } },
        nameCase: 'lower',
      },
    });
    const out = await runCli('precheck', scratch.writeJson('precheck.json', spec));
    const output = out.stdout + out.stderr;
    expect(out.code, output).toBe(1);
    expect(output).toMatch(/✗ schema\.mapping/);
    expect(output).toContain('mapping.schemas names nope, which holds nothing the migration moves');
    expect(output).toContain('mapping.tables names a.missing, which the migration does not move');
    expect(output).toContain('mapping.columns names a.t.ghost, which is not a column of that table');
    expect(output).toContain(`table a.kept would be named "${long}", which is 64 bytes: PostgreSQL keeps at most 63`);
    expect(output).toContain('table b.t would be named one.t, which table a.t already has');
    expect(output).toContain('columns X and x of a.t would both be named x');
    expect(output).toContain('function b.f() and a.f() would both be one.f()');
    expect(output).toContain('the target already has a.kept: pgferry creates and loads the source\'s a.kept under that name');
  }, 300_000);
});

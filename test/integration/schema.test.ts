import { spawnSync } from 'node:child_process';
import type pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { qualified } from '../../engine/sql.js';
import { beginMigration, ensureControlSchema, recordSchemaObjects } from '../../engine/control/index.js';
import {
  copySequenceValues,
  migratePostData,
  migratePreData,
  SchemaConflictError,
  type SchemaObjectResult,
} from '../../engine/schema/index.js';
import type { MigrationSpecInput } from '../../engine/spec/index.js';
import { migrationSpecSchema } from '../../engine/spec/schema.js';
import { startClusters, type LocalCluster } from '../../local/dev/cluster.js';
import { createSampleDatabase } from '../../local/dev/sample-database.js';
import { catalogSnapshot, extraSchemaSql } from '../support/schema-fixtures.js';

const clusters = new Map<number, LocalCluster>();
const clients: pg.Client[] = [];
const cluster = (major: number) => clusters.get(major)!;

async function connect(major: number, database: string): Promise<pg.Client> {
  const client = await cluster(major).connect(database);
  clients.push(client);
  return client;
}

const specFor = (input: Partial<MigrationSpecInput> = {}) =>
  migrationSpecSchema.parse({
    name: 'schema-test',
    source: { secret: 'env:PGFERRY_TEST_SOURCE' },
    target: { secret: 'env:PGFERRY_TEST_TARGET' },
    ...input,
  });

/** A small source (on 17) for the policy, selection, failure and sequence cases; each case migrates it into its own database on 18. */
const APP_SQL = `
CREATE SCHEMA app;
CREATE COLLATION app.plain (provider = libc, locale = 'C');
CREATE FUNCTION app.default_note() RETURNS text LANGUAGE sql AS $$ SELECT 'note' $$;
CREATE TABLE app.parent (id int PRIMARY KEY, name text COLLATE app.plain);
CREATE TABLE app.child (id int PRIMARY KEY, parent_id int REFERENCES app.parent, body text);
CREATE TABLE app.other (id int PRIMARY KEY, note text DEFAULT app.default_note());
CREATE SEQUENCE app.counter;
CREATE TABLE app.numbered (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, v text);
CREATE VIEW app.child_view AS SELECT c.id, p.name FROM app.child c JOIN app.parent p ON p.id = c.parent_id;
CREATE RULE parent_delete_log AS ON DELETE TO app.parent DO ALSO NOTIFY parent_deleted;
ALTER TABLE app.child ENABLE ROW LEVEL SECURITY;
CREATE POLICY child_visible ON app.child USING (body IS NOT NULL);
COMMENT ON TABLE app.parent IS 'the parents';
CREATE AGGREGATE app.text_concat(text) (SFUNC = textcat, STYPE = text);
CREATE ACCESS METHOD app_heap TYPE TABLE HANDLER heap_tableam_handler;
CREATE LANGUAGE app_lang HANDLER plpgsql_call_handler;
ALTER DATABASE app SET work_mem = '8MB';
INSERT INTO app.parent VALUES (1, 'one');
INSERT INTO app.child VALUES (1, 1, 'b');
INSERT INTO app.other VALUES (1, 'source row');
INSERT INTO app.numbered (v) SELECT 'x' FROM generate_series(1, 5);
`;

beforeAll(async () => {
  const started = await startClusters(([13, 15, 17, 18] as const).map((major) => ({ major, label: `schema${major}` })));
  for (const c of started) clusters.set(c.major, c);
  await Promise.all(
    [13, 15, 17].map(async (major) => {
      await createSampleDatabase(cluster(major));
      await cluster(major).sql(extraSchemaSql(major), 'shop');
    }),
  );
  await cluster(17).sql('CREATE DATABASE app');
  await cluster(17).sql(APP_SQL, 'app');
  await cluster(17).sql('CREATE DATABASE shop_from_13');
  await cluster(17).sql('CREATE DATABASE shop_from_15');
  await cluster(18).sql('CREATE DATABASE shop_from_17');
  await cluster(15).sql('CREATE DATABASE shop_copy');
});

afterAll(async () => {
  await Promise.all(clients.map((c) => c.end().catch(() => undefined)));
  await Promise.all([...clusters.values()].map((c) => c.stop()));
});

const byStatus = (objects: SchemaObjectResult[], status: SchemaObjectResult['status']) => objects.filter((o) => o.status === status);

describe('schema migration between versions', () => {
  it.each([
    [13, 17],
    [15, 17],
    [17, 18],
  ])('gives the target of %i → %i the same catalog as the source', async (from, to) => {
    const database = `shop_from_${from}`;
    const source = await connect(from, 'shop');
    const target = await connect(to, database);
    const spec = specFor();

    const pre = await migratePreData(source, target, spec);
    expect(pre.tables.map(qualified)).toEqual(expect.arrayContaining(['shop.events_2025', 'extra.measurements_eu_rest', 'Sales Data.MixedCase']));
    expect(byStatus(pre.objects, 'not_migrated')).toEqual([]);
    expect(pre.objects.filter((o) => !['created', 'existing'].includes(o.status))).toEqual([]);
    expect(pre.objects).toContainEqual({ kind: 'extension', identity: 'citext', status: 'created', detail: 'installed in selected schema extra' });

    // A few rows, so that validating the foreign keys checks real data.
    await target.query(`
      INSERT INTO shop.customers (email, full_name) VALUES ('a@example.com', 'A');
      INSERT INTO shop.orders (id, customer_id, ordered_at) SELECT 1, id, now() FROM shop.customers;
      INSERT INTO shop.products (sku, name, price) VALUES ('S1', 'P', 1);
      INSERT INTO shop.order_items (order_id, line_no, product_id, quantity, unit_price) VALUES (1, 1, 1, 2, 3.5);
      INSERT INTO extra.measurements VALUES ('de', '2025-03-01', 1);
      INSERT INTO extra.readings VALUES ('de', '2025-03-01', 'ok');`);
    const post = await migratePostData(
      () => cluster(from).connect('shop'),
      () => cluster(to).connect(database),
      spec,
      { parallelism: 3 },
    );
    expect(post.objects.filter((o) => o.status !== 'created')).toEqual([]);
    expect(post.objects).toContainEqual({ kind: 'trigger', identity: 'extra.tickets.tickets_disabled', status: 'created', detail: 'disable' });

    const options = { unqualifiedViews: from < 16, olderThan14: from < 14 };
    const [expected, actual] = await Promise.all([catalogSnapshot(source, options), catalogSnapshot(target, options)]);
    for (const part of Object.keys(expected)) expect({ [part]: actual[part] }).toEqual({ [part]: expected[part] });
    const { rows } = await target.query('SELECT n FROM extra.ticket_stats');
    expect(rows).toEqual([{ n: '0' }]);
  });

  it('leaves what a re-run finds as it is', async () => {
    const source = await connect(17, 'shop');
    const target = await connect(18, 'shop_from_17');
    const spec = specFor({ schema: { existingTables: 'ignore' } });
    const pre = await migratePreData(source, target, spec);
    const statuses = new Set(pre.objects.filter((o) => o.kind === 'table' && o.status !== 'skipped').map((o) => o.status));
    expect(statuses).toEqual(new Set(['existing']));
    expect(pre.objects.find((o) => o.identity === 'extra.ticket_codes')?.status).toBe('replaced');
    expect(pre.objects.find((o) => o.identity === 'extra.mood')?.status).toBe('existing');
    const post = await migratePostData(() => cluster(17).connect('shop'), () => cluster(18).connect('shop_from_17'), spec);
    const kinds = ['index', 'constraint', 'foreign key', 'trigger'];
    expect(new Set(post.objects.filter((o) => kinds.includes(o.kind)).map((o) => o.status))).toEqual(new Set(['existing']));
  });

  it('makes a 15 → 15 target that pg_dump cannot tell from its source', async () => {
    const source = await connect(15, 'shop');
    const target = await connect(15, 'shop_copy');
    const spec = specFor();
    await migratePreData(source, target, spec);
    await migratePostData(() => cluster(15).connect('shop'), () => cluster(15).connect('shop_copy'), spec);
    await ensureControlSchema(target); // present on a real target, and excluded below

    const { host, port, username, password } = cluster(15).connection;
    const dump = (database: string) => {
      const result = spawnSync(
        '/usr/bin/pg_dump',
        ['--schema-only', '--no-owner', '--no-privileges', '--exclude-schema=pgferry', '-h', host, '-p', String(port), '-U', username, '-d', database],
        { env: { ...process.env, PGPASSWORD: password }, encoding: 'utf8' },
      );
      if (result.status !== 0) throw new Error(`pg_dump ${database} failed: ${result.stderr}`);
      // pg_dump ≥ 15.14 brackets its script with \restrict / \unrestrict and a random key per run:
      // the only lines that differ between two dumps of the same schema.
      return result.stdout.replace(/^\\(un)?restrict .*$/gm, '');
    };
    const [expected, actual] = [dump('shop'), dump('shop_copy')];
    expect(actual.length).toBeGreaterThan(10_000);
    expect(actual).toEqual(expected);
  });
});

describe('schema migration policies and reports', () => {
  const appTarget = async (database: string, setup = '') => {
    await cluster(18).sql(`CREATE DATABASE ${database}`);
    if (setup) await cluster(18).sql(setup, database);
    return { source: await connect(17, 'app'), target: await connect(18, database) };
  };

  it('refuses existing tables by default, naming every one of them, and changes nothing', async () => {
    const { source, target } = await appTarget(
      'exist_error',
      'CREATE SCHEMA app; CREATE TABLE app.parent (id int); CREATE TABLE app.other (id int)',
    );
    const failure = await migratePreData(source, target, specFor()).catch((e: unknown) => e);
    expect(failure).toBeInstanceOf(SchemaConflictError);
    expect((failure as Error).name).toBe('SchemaConflict');
    expect((failure as Error).message).toContain('app.other, app.parent');
    expect((failure as Error).message).toContain('Set schema.existingTables to ignore, truncate or drop, or drop them.');
    const { rows } = await target.query(`SELECT to_regclass('app.child') AS child, to_regtype('app.plain') AS plain`);
    expect(rows).toEqual([{ child: null, plain: null }]);
  });

  it('keeps, empties or replaces existing tables as the policy says', async () => {
    const same = 'CREATE SCHEMA app; CREATE TABLE app.other (id int PRIMARY KEY, note text); INSERT INTO app.other VALUES (7, \'kept\')';
    const cases = [
      ['ignore', 'exist_ignore', same, 'existing', [{ id: 7, note: 'kept' }]],
      ['truncate', 'exist_truncate', same, 'truncated', []],
      ['drop', 'exist_drop', 'CREATE SCHEMA app; CREATE TABLE app.other (key text, extra int); INSERT INTO app.other VALUES (\'x\', 1)', 'replaced', []],
    ] as const;
    for (const [policy, database, setup, status, rowsAfter] of cases) {
      const { source, target } = await appTarget(database, setup);
      const pre = await migratePreData(source, target, specFor({ schema: { existingTables: policy } }));
      expect(pre.objects.find((o) => o.kind === 'table' && o.identity === 'app.other')?.status, policy).toBe(status);
      expect(pre.objects.find((o) => o.kind === 'table' && o.identity === 'app.parent')?.status, policy).toBe('created');
      expect((await target.query('SELECT * FROM app.other ORDER BY 1')).rows, policy).toEqual(rowsAfter);
    }
    const target = await connect(18, 'exist_drop');
    const { rows } = await target.query(
      `SELECT attname, format_type(atttypid, atttypmod) AS type, pg_get_expr(adbin, adrelid) AS default_expr
         FROM pg_attribute LEFT JOIN pg_attrdef ON adrelid = attrelid AND adnum = attnum
        WHERE attrelid = 'app.other'::regclass AND attnum > 0 AND NOT attisdropped ORDER BY attnum`,
    );
    expect(rows).toEqual([
      { attname: 'id', type: 'integer', default_expr: null },
      { attname: 'note', type: 'text', default_expr: 'app.default_note()' },
    ]);
  });

  it('lists what it does not migrate, and what the selection and sync flags leave out', async () => {
    const { source, target } = await appTarget('app_selection');
    const spec = specFor({
      objects: { include: [{ schema: 'app', tables: ['child', 'other'] }] },
      schema: { sync: { functions: false, views: false } },
    });
    const pre = await migratePreData(source, target, spec);
    expect(pre.tables.map(qualified)).toEqual(['app.child', 'app.other']);
    expect(pre.objects).toEqual(
      expect.arrayContaining([
        { kind: 'aggregate', identity: 'app.text_concat(text)', status: 'skipped', detail: 'schema.sync.functions is false' },
        { kind: 'access method', identity: 'app_heap', status: 'not_migrated', detail: 'access methods are not migrated: create it on the target (usually with its extension)' },
        { kind: 'language', identity: 'app_lang', status: 'not_migrated', detail: 'procedural languages outside extensions are not migrated: create it on the target' },
        { kind: 'database setting', identity: 'database app', status: 'not_migrated', detail: 'ALTER DATABASE SET is not migrated: work_mem=8MB' },
        { kind: 'table', identity: 'app.parent', status: 'skipped', detail: 'not selected by objects' },
        { kind: 'view', identity: 'app.child_view', status: 'skipped', detail: 'depends on table app.parent, which is not migrated' },
        {
          kind: 'function',
          identity: 'app.default_note()',
          status: 'created',
          detail: 'schema.sync.functions is false, but created: needed by app.other',
        },
      ]),
    );
    const post = await migratePostData(() => cluster(17).connect('app'), () => cluster(18).connect('app_selection'), spec);
    expect(post.objects).toContainEqual({
      kind: 'foreign key',
      identity: 'app.child.child_parent_id_fkey',
      status: 'skipped',
      detail: 'references app.parent, which is not selected',
    });
    // Rules, policies, row-level security and comments come in post-data, for what was migrated.
    expect(post.objects).toEqual(
      expect.arrayContaining([
        { kind: 'policy', identity: 'child_visible on app.child', status: 'created' },
        { kind: 'row level security', identity: 'app.child', status: 'created', detail: 'enabled' },
        { kind: 'comment', identity: 'table app.parent', status: 'skipped', detail: 'its object is not on the target' },
      ]),
    );
    expect(post.objects.filter((o) => o.kind === 'rule')).toEqual([]);
    expect([...pre.objects, ...post.objects].filter((o) => ['rule', 'policy', 'comment', 'row level security'].includes(o.kind) && o.status === 'not_migrated')).toEqual([]);
  });

  it('names the object and the reason when a statement fails', async () => {
    // A view where the source has a table: not an existing *table*, so no conflict, but CREATE TABLE fails.
    const { source, target } = await appTarget('app_failure', 'CREATE SCHEMA app; CREATE VIEW app.other AS SELECT 1 AS id');
    const failure = (await migratePreData(source, target, specFor()).catch((e: unknown) => e)) as Error;
    expect(failure.name).toBe('pgferry.SchemaFailed');
    expect(failure.message).toBe('Cannot create table app.other: relation "other" already exists');
    const { rows } = await target.query(`SELECT to_regclass('app.parent') AS parent`);
    expect(rows).toEqual([{ parent: null }]); // one transaction: nothing was left behind

    await cluster(18).sql('CREATE DATABASE app_fk');
    const fkTarget = await connect(18, 'app_fk');
    await migratePreData(source, fkTarget, specFor());
    await fkTarget.query(`INSERT INTO app.parent VALUES (1, 'one'); INSERT INTO app.child VALUES (1, 1, 'ok'), (2, 99, 'orphan')`);
    const fkFailure = (await migratePostData(() => cluster(17).connect('app'), () => cluster(18).connect('app_fk'), specFor()).catch(
      (e: unknown) => e,
    )) as Error;
    expect(fkFailure.name).toBe('pgferry.SchemaFailed');
    expect(fkFailure.message).toMatch(
      /^Cannot validate foreign key app\.child\.child_parent_id_fkey: insert or update on table "child" violates foreign key constraint "child_parent_id_fkey"/,
    );
  });

  it('copies sequence values, identity ones included', async () => {
    const { source, target } = await appTarget('app_sequences');
    const spec = specFor();
    await migratePreData(source, target, spec);
    await source.query(`SELECT setval('app.counter', 1000)`);
    const results = await copySequenceValues(source, target, spec);
    expect(results).toEqual([
      { kind: 'sequence value', identity: 'app.counter', status: 'replaced', detail: 'last_value 1000' },
      { kind: 'sequence value', identity: 'app.numbered_id_seq', status: 'replaced', detail: 'last_value 5' },
    ]);
    const { rows } = await target.query(`SELECT nextval('app.counter')::int AS counter`);
    expect(rows).toEqual([{ counter: 1001 }]);
    const inserted = await target.query(`INSERT INTO app.numbered (v) VALUES ('y') RETURNING id::int`);
    expect(inserted.rows).toEqual([{ id: 6 }]);
  });

  it('records the results in the control schema, and never migrates the control schema', async () => {
    const { source, target } = await appTarget('app_record');
    const spec = specFor();
    await ensureControlSchema(target);
    await beginMigration(target, spec.name, spec);
    const pre = await migratePreData(source, target, spec);
    await recordSchemaObjects(target, spec.name, 'pre-data', pre.objects);
    const post = await migratePostData(() => cluster(17).connect('app'), () => cluster(18).connect('app_record'), spec);
    await recordSchemaObjects(target, spec.name, 'post-data', post.objects);
    await recordSchemaObjects(target, spec.name, 'sequences', await copySequenceValues(source, target, spec));

    // The control schema on the *source* (a target of another migration) is not copied either.
    await ensureControlSchema(source);
    const again = await migratePreData(source, target, specFor({ schema: { existingTables: 'ignore' } }));
    expect(again.objects.filter((o) => o.identity.startsWith('pgferry'))).toEqual([]);
    await recordSchemaObjects(target, spec.name, 'pre-data', again.objects);

    const { rows } = await target.query(
      `SELECT phase, kind, identity, status, detail FROM pgferry.schema_objects WHERE migration = $1 ORDER BY kind, identity`,
      [spec.name],
    );
    expect(rows).toEqual(
      expect.arrayContaining([
        { phase: 'pre-data', kind: 'table', identity: 'app.child', status: 'existing', detail: null },
        { phase: 'post-data', kind: 'foreign key', identity: 'app.child.child_parent_id_fkey', status: 'created', detail: null },
        { phase: 'sequences', kind: 'sequence value', identity: 'app.numbered_id_seq', status: 'replaced', detail: 'last_value 5' },
        { phase: 'post-data', kind: 'rule', identity: 'parent_delete_log on app.parent', status: 'created', detail: null },
        { phase: 'post-data', kind: 'comment', identity: 'table app.parent', status: 'created', detail: null },
      ]),
    );
    expect(new Set(rows.map((r) => `${r.kind} ${r.identity}`)).size).toBe(rows.length);
  });
});

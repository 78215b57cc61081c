import { spawnSync } from 'node:child_process';
import type pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { migratePostData, migratePreData, type SchemaObjectResult } from '../../engine/schema/index.js';
import type { MigrationSpecInput } from '../../engine/spec/index.js';
import { migrationSpecSchema } from '../../engine/spec/schema.js';
import { startClusters, type LocalCluster } from '../../local/dev/cluster.js';
import { catalogSnapshot } from '../support/schema-fixtures.js';
import { KINDS_AFTER_ROWS_SQL, KINDS_ROWS_SQL, KINDS_SCHEMA_SQL, kindsSnapshot } from '../support/kinds-fixture.js';

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
    name: 'schema-kinds',
    source: { secret: 'env:PGFERRY_TEST_SOURCE' },
    target: { secret: 'env:PGFERRY_TEST_TARGET' },
    ...input,
  });

const NEW_KINDS = [
  'aggregate',
  'operator',
  'operator family',
  'operator class',
  'cast',
  'conversion',
  'text search template',
  'text search parser',
  'text search dictionary',
  'text search configuration',
];

beforeAll(async () => {
  const started = await startClusters(([13, 15, 18] as const).map((major) => ({ major, label: `kinds${major}` })));
  for (const c of started) clusters.set(c.major, c);
  for (const major of [13, 15]) {
    await cluster(major).sql('CREATE DATABASE kinds');
    await cluster(major).sql(KINDS_SCHEMA_SQL + KINDS_ROWS_SQL + KINDS_AFTER_ROWS_SQL, 'kinds');
  }
  await cluster(15).sql('CREATE DATABASE kinds_copy');
  for (const database of ['kinds_from_13', 'kinds_from_15', 'kinds_selection']) await cluster(18).sql(`CREATE DATABASE ${database}`);
});

afterAll(async () => {
  await Promise.all(clients.map((c) => c.end().catch(() => undefined)));
  await Promise.all([...clusters.values()].map((c) => c.stop()));
});

/** Pre-data, the rows (as the load would copy them), post-data. */
async function migrate(from: number, to: number, database: string, spec = specFor()) {
  const source = await connect(from, 'kinds');
  const target = await connect(to, database);
  const pre = await migratePreData(source, target, spec);
  await target.query(KINDS_ROWS_SQL);
  const post = await migratePostData(() => cluster(from).connect('kinds'), () => cluster(to).connect(database), spec);
  return { source, target, pre, post };
}

const VIEWS = ['kinds.tags_by_item', 'kinds.tag_summary', 'kinds.doc_moods', 'kinds.doc_rank'];

async function viewRows(client: pg.Client): Promise<unknown[]> {
  const rows = [];
  for (const view of VIEWS) rows.push({ view, rows: (await client.query(`SELECT * FROM ${view} ORDER BY 1`)).rows });
  return rows;
}

describe('pre-data kinds beyond tables, views and types', () => {
  it('makes a 15 → 15 target that pg_dump cannot tell from its source', async () => {
    const { source, target, pre, post } = await migrate(15, 15, 'kinds_copy');
    expect(pre.objects.filter((o) => !['created', 'existing'].includes(o.status))).toEqual([]);
    for (const kind of NEW_KINDS) expect(pre.objects.filter((o) => o.kind === kind && o.status === 'created').length, kind).toBeGreaterThan(0);
    expect(pre.objects).toContainEqual({ kind: 'aggregate', identity: 'kinds.group_concat(text)', status: 'created' });
    expect(pre.objects).toContainEqual({ kind: 'cast', identity: '(kinds.mood AS integer)', status: 'created', detail: 'created with function kinds.mood_rank(kinds.mood)' });
    expect(pre.objects).toContainEqual({ kind: 'cast', identity: '(xid AS integer)', status: 'created', detail: 'its types and function are built in' });
    // The rows violate the domain's NOT VALID check: it is added after them, still NOT VALID.
    expect(post.objects).toContainEqual({
      kind: 'domain constraint',
      identity: 'kinds.small.small_limit',
      status: 'created',
      detail: 'NOT VALID on the source, added after the load',
    });
    const { rows } = await target.query(`SELECT convalidated FROM pg_constraint WHERE conname = 'small_limit'`);
    expect(rows).toEqual([{ convalidated: false }]);
    expect(await viewRows(target)).toEqual(await viewRows(source));

    const { host, port, username, password } = cluster(15).connection;
    const dump = (database: string) => {
      const result = spawnSync(
        '/usr/bin/pg_dump',
        ['--schema-only', '--no-owner', '--no-privileges', '--exclude-schema=pgferry', '-h', host, '-p', String(port), '-U', username, '-d', database],
        { env: { ...process.env, PGPASSWORD: password }, encoding: 'utf8' },
      );
      if (result.status !== 0) throw new Error(`pg_dump ${database} failed: ${result.stderr}`);
      // pg_dump ≥ 15.14 brackets its script with \restrict / \unrestrict and a random key per run.
      return result.stdout.replace(/^\\(un)?restrict .*$/gm, '').split('\n').sort().join('\n');
    };
    const [expected, actual] = [dump('kinds'), dump('kinds_copy')];
    expect(actual).toContain('CREATE AGGREGATE kinds.group_concat(text)');
    expect(actual).toContain('ALTER TABLE ONLY kinds.events ATTACH PARTITION kinds.events_2026');
    expect(actual).toEqual(expected);
  });

  it.each([
    [15, 18],
    [13, 18],
  ])('gives the target of %i → %i the same objects, nothing reported not migrated', async (from, to) => {
    const { source, target, pre, post } = await migrate(from, to, `kinds_from_${from}`);
    expect(pre.objects.filter((o) => o.status === 'not_migrated')).toEqual([]);
    expect(pre.objects.filter((o) => !['created', 'existing'].includes(o.status))).toEqual([]);
    expect(post.objects.filter((o) => o.status !== 'created')).toEqual([]);
    const [expected, actual] = await Promise.all([kindsSnapshot(source), kindsSnapshot(target)]);
    if (from < 14) {
      // From PostgreSQL 14 the index method decides which members of a GiST or GIN class are the class's
      // and which are only its family's (the optional ones): a 13 source has them all in the class.
      for (const snapshot of [expected, actual]) snapshot.members = snapshot.members!.map((m) => ({ ...(m as object), owner: undefined }));
    }
    for (const part of Object.keys(expected)) expect({ [part]: actual[part] }).toEqual({ [part]: expected[part] });
    const options = { unqualifiedViews: from < 16, olderThan14: from < 14 };
    const [expectedCatalog, actualCatalog] = await Promise.all([catalogSnapshot(source, options), catalogSnapshot(target, options)]);
    for (const part of Object.keys(expectedCatalog)) expect({ [part]: actualCatalog[part] }).toEqual({ [part]: expectedCatalog[part] });
    expect(await viewRows(target)).toEqual(await viewRows(source));
  });

  it('leaves the objects a re-run finds as they are', async () => {
    const source = await connect(15, 'kinds');
    const target = await connect(18, 'kinds_from_15');
    const spec = specFor({ schema: { existingTables: 'ignore' } });
    const pre = await migratePreData(source, target, spec);
    const kinds = pre.objects.filter((o) => NEW_KINDS.includes(o.kind) && o.kind !== 'aggregate');
    expect(kinds.length).toBeGreaterThan(15);
    expect(kinds.filter((o) => o.status !== 'existing')).toEqual([]);
    expect(pre.objects.filter((o) => o.kind === 'aggregate').map((o) => o.status)).toEqual(Array(7).fill('existing'));
    const post = await migratePostData(() => cluster(15).connect('kinds'), () => cluster(18).connect('kinds_from_15'), spec);
    expect(post.objects).toContainEqual({ kind: 'domain constraint', identity: 'kinds.small.small_limit', status: 'existing' });
  });

  it('carries the casts of what a selection migrates, names the others, and pulls in the aggregates views need', async () => {
    // (Last test: the others expect nothing not migrated.) A member added to a built-in family cannot be created: it is named.
    await cluster(15).sql(
      `CREATE FUNCTION kinds.int_text_lt(int, text) RETURNS boolean LANGUAGE sql IMMUTABLE AS 'SELECT $1::text < $2';
       CREATE OPERATOR kinds.<<< (FUNCTION = kinds.int_text_lt, LEFTARG = int, RIGHTARG = text);
       ALTER OPERATOR FAMILY integer_ops USING btree ADD OPERATOR 1 kinds.<<<(int, text);`,
      'kinds',
    );
    const spec = specFor({ objects: { include: [{ schema: 'kinds', tables: ['*'] }] }, schema: { sync: { functions: false } } });
    const { pre } = await migrate(15, 18, 'kinds_selection', spec);
    const objects = pre.objects.filter((o) => NEW_KINDS.includes(o.kind) || o.status === 'not_migrated');
    const is = (kind: string, identity: string) => (o: SchemaObjectResult) => o.kind === kind && o.identity === identity;
    expect(objects.find(is('cast', '(kinds_other.flag AS kinds_other.switch)'))).toEqual({
      kind: 'cast',
      identity: '(kinds_other.flag AS kinds_other.switch)',
      status: 'skipped',
      detail: 'neither its source type, its target type nor its function is migrated',
    });
    expect(objects.find(is('cast', '(kinds_other.level AS text)'))).toEqual({
      kind: 'cast',
      identity: '(kinds_other.level AS text)',
      status: 'created',
      detail: 'created with type kinds_other.level',
    });
    expect(objects.find(is('aggregate', 'kinds.group_concat(text)'))).toEqual({
      kind: 'aggregate',
      identity: 'kinds.group_concat(text)',
      status: 'created',
      detail: 'schema.sync.functions is false, but created: needed by kinds.tags_by_item',
    });
    expect(objects.filter((o) => o.status === 'not_migrated')).toEqual([
      {
        kind: 'operator family member',
        identity: expect.stringContaining('integer_ops'),
        status: 'not_migrated',
        detail: 'members added to an operator family pgferry does not create (a built-in one) are not migrated',
      },
    ]);
    expect(objects.filter((o) => o.kind === 'text search configuration')).toEqual([
      { kind: 'text search configuration', identity: 'kinds.cfg', status: 'created' },
    ]);
  });
});

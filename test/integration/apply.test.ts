/**
 * The CDC apply engine against real PostgreSQL: changes made on a 17 source are read from a
 * pgoutput slot, decoded and applied by the Applier to a 13 target, and the target is proven
 * identical to the source with the tests' own per-table hashes.
 */
import type pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Applier, ApplyConflictError, readAppliedLsn, type ApplierOptions } from '../../engine/cdc/apply/index.js';
import { decodePgoutput, UNCHANGED_TOAST, type PgoutputMessage, type RelationMessage, type TupleValue } from '../../engine/cdc/pgoutput.js';
import { CANONICAL_SESSION_SQL } from '../../engine/connect/index.js';
import { beginMigration, ensureControlSchema } from '../../engine/control/index.js';
import { startClusters, type LocalCluster } from '../../local/dev/cluster.js';
import { databaseHashes } from '../support/equality.js';

const MIGRATION = 'apply-test';

/** Same DDL on both sides. `docs.body` is stored out of line uncompressed, so unchanged values arrive as unchanged-TOAST markers. */
const SCHEMA = `
  CREATE SCHEMA app;
  CREATE TABLE app.docs (id int PRIMARY KEY, counter int NOT NULL, title text, body text);
  ALTER TABLE app.docs ALTER COLUMN body SET STORAGE EXTERNAL;
  CREATE TABLE app.pairs (a int, b text, v numeric, PRIMARY KEY (a, b));
  CREATE TABLE app.nokey (a int, b text, f float8, j json, p point);
  ALTER TABLE app.nokey REPLICA IDENTITY FULL;
  CREATE TABLE app.uniq (id int PRIMARY KEY, code text NOT NULL UNIQUE, n int, n2 int GENERATED ALWAYS AS (n * 2) STORED);
  CREATE TABLE app.ridx (id int NOT NULL, k text NOT NULL, v text);
  CREATE UNIQUE INDEX ridx_k ON app.ridx (k);
  ALTER TABLE app.ridx REPLICA IDENTITY USING INDEX ridx_k;
  CREATE TABLE app.logs (id int GENERATED ALWAYS AS IDENTITY PRIMARY KEY, msg text);
  CREATE TABLE app."Typed ""Table""" (
    id int PRIMARY KEY, n numeric, f float8, ts timestamptz, iv interval, raw bytea, jb jsonb, js json, tags text[],
    pt point, u uuid, x xml, s text, c char(5), vc varchar(10), bx box, "we""ird col" int);
  CREATE TABLE app.items (id int PRIMARY KEY, v text);
  CREATE TYPE app.pt AS (x int, label text);
  CREATE DOMAIN app.pt_pos AS app.pt CHECK ((VALUE).x >= 0);
  CREATE TABLE app.shapes (id int PRIMARY KEY, p app.pt, ps app.pt[], d app.pt_pos, n int);
  CREATE TABLE app.family (id int PRIMARY KEY, v text);
  CREATE TABLE app.family_kid (id int PRIMARY KEY, v text, extra int);
  ALTER TABLE app.family_kid INHERIT app.family;
  CREATE TABLE public.plain_thing (id int);
  CREATE TABLE app.refs (id int PRIMARY KEY, r regclass, t regtype, f regprocedure, c regconfig, ns regnamespace);
  CREATE TABLE app.no_columns ();
  ALTER TABLE app.no_columns REPLICA IDENTITY FULL;
`;

/** Initial rows, identical on both sides before the slot exists (deterministic SQL only). */
const SEED = `
  INSERT INTO app.docs SELECT g, 0, 'title ' || g, repeat(md5(g::text), 100 + g) FROM generate_series(1, 40) g;
  INSERT INTO app.pairs SELECT g % 13, 'b' || (g / 13), g * 1.5 FROM generate_series(1, 60) g;
  INSERT INTO app.nokey SELECT g % 7, 'b' || (g % 3), CASE WHEN g % 5 = 0 THEN '-0' ELSE (g % 4)::float8 END, ('{"k": ' || (g % 2) || '}')::json, point(g % 4, 0)
    FROM generate_series(1, 50) g;
  INSERT INTO app.nokey VALUES (NULL, '', 0, NULL, NULL), (NULL, '', 0, NULL, NULL), (NULL, NULL, '-0', '[]', '(1,1)');
  INSERT INTO app.uniq (id, code, n) SELECT g, 'code-' || g, g FROM generate_series(1, 30) g;
  INSERT INTO app.ridx SELECT g, 'k' || g, 'v' || g FROM generate_series(1, 30) g;
  INSERT INTO app.logs (msg) SELECT 'log ' || g FROM generate_series(1, 10) g;
  INSERT INTO app.shapes SELECT g, ROW(g, 'p' || g)::app.pt, ARRAY[ROW(g, 'a')::app.pt, ROW(NULL, 'b,"c"')::app.pt], ROW(g, NULL)::app.pt, g FROM generate_series(1, 20) g;
  INSERT INTO app.family SELECT g, 'parent ' || g FROM generate_series(1, 5) g;
  INSERT INTO app.family_kid SELECT g, 'kid ' || g, g FROM generate_series(101, 105) g;
  INSERT INTO app.no_columns SELECT FROM generate_series(1, 3);
`;

/** Edge values per column of the typed table (text input forms). */
const TYPED_VALUES: Record<string, (string | null)[]> = {
  n: ['0', '-0.000001', '12345678901234567890.123456789', 'NaN', '1e-20', '-5.50', null],
  f: ['NaN', '-0', 'Infinity', '-Infinity', '1.0000000000000002', '2.5e-310', '0', null],
  ts: ['2024-02-29 13:14:15.123456+00', '1999-12-31 23:59:59.000001-08', 'infinity', '-infinity', '0001-01-01 00:00:00+00', '2000-01-01 00:00:00.5+05:45', null],
  iv: ['1 year 2 mons 3 days 04:05:06.789', '-00:00:00.000001', '0', '100 years', 'P1Y2M3DT4H5M6.5S', null],
  raw: ['\\x', '\\xdeadbeef00', '\\x5c0a09', null],
  jb: ['{}', '{"a": [1, 2.50, null], "b": "ü\\n"}', 'null', '"str"', '[1e30, -0]', null],
  js: ['{"b":1,  "a" : [ ] }', '[]', '"\\u0000 esc"', '  {"dup": 1, "dup": 2}', null],
  tags: ['{}', '{"a b","\\"q\\"",NULL,"",x}', '{{1,2},{3,4}}', '[0:1]={a,b}', '{"{x}","a,b","back\\\\slash"}', null],
  pt: ['(1,2)', '(-0,0)', '(NaN,1e+300)', null],
  u: ['a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '00000000-0000-0000-0000-000000000000', null],
  x: ['<a>ü</a>', 'text only', '<r a="1"><b/></r>', null],
  s: ['', 'tab\there', 'line\nbreak\\back\r', 'quote"s', '{braces}', 'NULL', 'ü€😀', ' spaces ', null],
  c: ['ab', '', 'abcde', null],
  vc: ['', 'x', 'ten chars!', null],
  bx: ['(1,2),(3,4)', '(0,0),(0,0)', null],
  'we"ird col': ['0', '-2147483648', null],
};
const TYPED_COLUMNS = Object.keys(TYPED_VALUES);
const TYPED_CASTS: Record<string, string> = {
  n: 'numeric', f: 'float8', ts: 'timestamptz', iv: 'interval', raw: 'bytea', jb: 'jsonb', js: 'json', tags: 'text[]',
  pt: 'point', u: 'uuid', x: 'xml', s: 'text', c: 'char(5)', vc: 'varchar(10)', bx: 'box', 'we"ird col': 'int',
};
const qi = (name: string) => `"${name.replace(/"/g, '""')}"`;
const TYPED = 'app."Typed ""Table"""';

/** Deterministic PRNG (mulberry32). */
function random(seed: number): () => number {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

interface Captured {
  messages: PgoutputMessage[];
  commits: Extract<PgoutputMessage, { tag: 'commit' }>[];
  rows: number;
}

let source: LocalCluster;
let target: LocalCluster;
let sourceClient: pg.Client;
const openClients: pg.Client[] = [];
let databases = 0;

async function connectTarget(database: string): Promise<pg.Client> {
  const client = await target.connect(database);
  openClients.push(client);
  return client;
}

async function close(client: pg.Client): Promise<void> {
  openClients.splice(openClients.indexOf(client), 1);
  await client.end();
}

/** A fresh target database holding the schema, the seed rows and the control rows (a copy of the template). */
async function cloneTarget(from = 'tmpl'): Promise<{ name: string; client: pg.Client }> {
  const name = `t${++databases}`;
  await target.sql(`CREATE DATABASE ${name} TEMPLATE ${from}`);
  const client = await connectTarget(name);
  await client.query(`SET session_replication_role = replica; ${CANONICAL_SESSION_SQL}`);
  return { name, client };
}

/** Everything the slot holds now, decoded. */
async function capture(): Promise<Captured> {
  const { rows } = await sourceClient.query<{ data: Buffer }>(
    `SELECT data FROM pg_logical_slot_get_binary_changes('s', NULL, NULL, 'proto_version', '1', 'publication_names', 'pub')`,
  );
  const messages = rows.map((r) => decodePgoutput(r.data));
  return {
    messages,
    commits: messages.filter((m): m is Extract<PgoutputMessage, { tag: 'commit' }> => m.tag === 'commit'),
    rows: messages.filter((m) => m.tag === 'insert' || m.tag === 'update' || m.tag === 'delete').length,
  };
}

/** Feeds messages to an applier, flushing after every `flushEvery` commits and at the end. */
async function replay(applier: Applier, messages: PgoutputMessage[], flushEvery = 1): Promise<void> {
  let commits = 0;
  for (const message of messages) {
    await applier.handle(message);
    if (message.tag === 'commit' && ++commits % flushEvery === 0) await applier.flush();
  }
  await applier.flush();
}

/**
 * Runs one source transaction of statements, each in a savepoint so a statement the random
 * workload got wrong (e.g. a key collision) just does nothing. Returns how many failed.
 */
async function sourceTransaction(statements: [string, unknown[]][]): Promise<number> {
  let failed = 0;
  await sourceClient.query('BEGIN');
  for (const [sql, params] of statements) {
    await sourceClient.query('SAVEPOINT w');
    try {
      await sourceClient.query(sql, params);
      await sourceClient.query('RELEASE SAVEPOINT w');
    } catch {
      failed++;
      await sourceClient.query('ROLLBACK TO SAVEPOINT w');
    }
  }
  await sourceClient.query('COMMIT');
  return failed;
}

async function replicationRow(client: pg.Client) {
  const { rows } = await client.query(
    `SELECT applied_lsn::text AS lsn, transactions_applied::int AS transactions, rows_applied::int AS rows,
            (extract(epoch FROM applied_commit_time) * 1000000)::bigint::text AS commit_us
       FROM pgferry.replication WHERE migration = $1`,
    [MIGRATION],
  );
  return rows[0] as { lsn: string | null; transactions: number; rows: number; commit_us: string | null };
}

beforeAll(async () => {
  [source, target] = await startClusters([
    // The source prints timestamps in a zone with a 45-minute offset; the target runs in UTC.
    { major: 17, label: 'apply-src', settings: { wal_level: 'logical', synchronous_commit: 'on', timezone: 'Asia/Kathmandu' } },
    { major: 13, label: 'apply-tgt' },
  ]);
  await source.sql(SCHEMA + SEED);
  await source.sql(`CREATE PUBLICATION pub FOR TABLES IN SCHEMA app`);
  await source.sql(`SELECT pg_create_logical_replication_slot('s', 'pgoutput')`);
  sourceClient = await source.connect();

  await target.sql('CREATE DATABASE tmpl');
  await target.sql(SCHEMA + SEED, 'tmpl');
  const tmpl = await target.connect('tmpl');
  await ensureControlSchema(tmpl);
  await beginMigration(tmpl, MIGRATION, { mode: 'cdc' });
  await tmpl.query(`INSERT INTO pgferry.replication (migration, slot_name, publication_name) VALUES ($1, 's', 'pub')`, [MIGRATION]);
  await tmpl.end();
  expect(await databaseHashes(target, 'tmpl')).toEqual(await databaseHashes(source));
});

afterAll(async () => {
  await Promise.allSettled(openClients.map((c) => c.end()));
  await sourceClient?.end().catch(() => undefined);
  await Promise.allSettled([source?.stop(), target?.stop()]);
});

/** The random workload: many transactions mixing every kind of change on every table. */
async function randomWorkload(seed: number, transactions: number): Promise<{ statements: number; failed: number }> {
  const rnd = random(seed);
  const int = (n: number) => Math.floor(rnd() * n);
  const pick = <T,>(values: T[]): T => values[int(values.length)]!;
  let counter = 1000;
  const nth = (table: string, column: string) => `(SELECT ${column} FROM ${table} ORDER BY ${column} LIMIT 1 OFFSET ${int(40)} % greatest(1, (SELECT count(*) FROM ${table})))`;
  const body = () => (rnd() < 0.15 ? null : rnd() < 0.5 ? `short ${int(1e6)}` : `${int(1e9)}-`.repeat(300 + int(700)));
  const typedRow = (id: number, pickValue: (column: string) => string | null): [string, unknown[]] => [
    `INSERT INTO ${TYPED} (id, ${TYPED_COLUMNS.map(qi).join(', ')}) VALUES ($1, ${TYPED_COLUMNS.map((c, i) => `$${i + 2}::${TYPED_CASTS[c]}`).join(', ')})`,
    [id, ...TYPED_COLUMNS.map(pickValue)],
  ];

  // Every edge value goes through CDC at least once.
  const longest = Math.max(...Object.values(TYPED_VALUES).map((v) => v.length));
  let failed = await sourceTransaction(Array.from({ length: longest }, (_, i) => typedRow(i + 1, (c) => TYPED_VALUES[c]![i % TYPED_VALUES[c]!.length]!)));
  let total = longest;

  const operations: (() => [string, unknown[]])[] = [
    // docs: TOASTed body, updates that leave it unchanged, key changes with and without it
    () => [`INSERT INTO app.docs VALUES ($1, 0, $2, $3)`, [++counter, `title ${counter}`, body()]],
    () => [`UPDATE app.docs SET counter = counter + 1 WHERE id = ${nth('app.docs', 'id')}`, []],
    () => [`UPDATE app.docs SET body = $1 WHERE id = ${nth('app.docs', 'id')}`, [body()]],
    () => [`UPDATE app.docs SET id = $1 WHERE id = ${nth('app.docs', 'id')}`, [++counter]],
    () => [`UPDATE app.docs SET id = $1, body = $2 WHERE id = ${nth('app.docs', 'id')}`, [++counter, body()]],
    () => [`UPDATE app.docs SET title = title || '+' WHERE id % 7 = $1`, [int(7)]],
    () => [`DELETE FROM app.docs WHERE id = ${nth('app.docs', 'id')}`, []],
    // pairs: composite key
    () => [`INSERT INTO app.pairs VALUES ($1, $2, $3)`, [int(13), `n${++counter}`, `${int(1000)}.${int(100)}`]],
    () => [`UPDATE app.pairs SET v = v * 2 WHERE (a, b) = (SELECT a, b FROM app.pairs ORDER BY a, b LIMIT 1 OFFSET $1)`, [int(50)]],
    () => [`UPDATE app.pairs SET b = b || $2 WHERE (a, b) = (SELECT a, b FROM app.pairs ORDER BY a, b LIMIT 1 OFFSET $1)`, [int(50), `.${++counter}`]],
    () => [`UPDATE app.pairs SET a = a + 100 WHERE a = $1`, [int(13)]],
    () => [`DELETE FROM app.pairs WHERE (a, b) = (SELECT a, b FROM app.pairs ORDER BY a, b LIMIT 1 OFFSET $1)`, [int(50)]],
    // nokey: REPLICA IDENTITY FULL with duplicate rows, NULLs, '' and -0
    () => [`INSERT INTO app.nokey SELECT * FROM app.nokey WHERE a IS NOT DISTINCT FROM $1 LIMIT 1`, [rnd() < 0.2 ? null : int(7)]],
    () => [`INSERT INTO app.nokey VALUES ($1, $2, $3, $4, $5)`, [pick([null, int(7)]), pick([null, '', 'b1']), pick(['-0', '0', 'NaN', '1.5']), pick([null, '{"k": 1}', '[]']), pick([null, '(1,1)', '(0,-0)'])]],
    () => [`UPDATE app.nokey SET b = coalesce(b, '') || '!' WHERE a = $1`, [int(7)]],
    () => [`UPDATE app.nokey SET f = -f WHERE ctid = (SELECT ctid FROM app.nokey WHERE a IS NOT DISTINCT FROM $1 LIMIT 1)`, [rnd() < 0.2 ? null : int(7)]],
    () => [`DELETE FROM app.nokey WHERE ctid = (SELECT ctid FROM app.nokey WHERE a IS NOT DISTINCT FROM $1 LIMIT 1)`, [rnd() < 0.2 ? null : int(7)]],
    () => [`DELETE FROM app.nokey WHERE a = $1 AND f = 0 AND f::text = '-0'`, [int(7)]],
    // uniq: a secondary unique key, and a generated column
    () => [`INSERT INTO app.uniq (id, code, n) VALUES ($1, $2, $3)`, [++counter, `code-${counter}`, int(100)]],
    () => [`UPDATE app.uniq SET code = $1, n = n + 1 WHERE id = ${nth('app.uniq', 'id')}`, [`code-${++counter}`]],
    () => [`DELETE FROM app.uniq WHERE id = ${nth('app.uniq', 'id')}`, []],
    // ridx: replica identity index on k
    () => [`INSERT INTO app.ridx VALUES ($1, $2, $3)`, [++counter, `k${counter}`, `v${counter}`]],
    () => [`UPDATE app.ridx SET v = v || '*' WHERE k = ${nth('app.ridx', 'k')}`, []],
    () => [`UPDATE app.ridx SET k = $1 WHERE k = ${nth('app.ridx', 'k')}`, [`k${++counter}`]],
    () => [`DELETE FROM app.ridx WHERE k = ${nth('app.ridx', 'k')}`, []],
    // logs: GENERATED ALWAYS identity
    () => [`INSERT INTO app.logs (msg) VALUES ($1)`, [`log ${++counter}`]],
    () => [`UPDATE app.logs SET msg = msg || '.' WHERE id = ${nth('app.logs', 'id')}`, []],
    () => [`DELETE FROM app.logs WHERE id = ${nth('app.logs', 'id')}`, []],
    // typed
    () => typedRow(++counter, (c) => pick(TYPED_VALUES[c]!)),
    () => {
      const column = pick(TYPED_COLUMNS);
      return [`UPDATE ${TYPED} SET ${qi(column)} = $1::${TYPED_CASTS[column]} WHERE id = ${nth(TYPED, 'id')}`, [pick(TYPED_VALUES[column]!)]];
    },
    () => [`DELETE FROM ${TYPED} WHERE id = ${nth(TYPED, 'id')}`, []],
  ];
  const rare: (() => [string, unknown[]])[] = [
    () => [`TRUNCATE app.pairs`, []],
    () => [`TRUNCATE app.logs, app.ridx RESTART IDENTITY`, []],
  ];

  for (let t = 0; t < transactions; t++) {
    const statements: [string, unknown[]][] = [];
    const count = 1 + int(6);
    for (let s = 0; s < count; s++) statements.push(rnd() < 0.01 ? pick(rare)() : pick(operations)());
    if (t === Math.floor(transactions / 3)) {
      // A bulk transaction: big enough to be cut into many chunks when chunks are tiny.
      statements.push(
        [`UPDATE app.docs SET counter = counter + 1`, []],
        [`INSERT INTO app.pairs SELECT 500 + g % 50, 'bulk' || g, g FROM generate_series(1, 1500) g`, []],
        [`UPDATE app.pairs SET v = v + 1 WHERE a >= 500`, []],
        [`INSERT INTO app.nokey SELECT g % 5, 'bulk', g % 3, NULL, NULL FROM generate_series(1, 600) g`, []],
        [`DELETE FROM app.nokey WHERE b = 'bulk' AND a < 3`, []],
      );
    }
    failed += await sourceTransaction(statements);
    total += statements.length;
  }
  return { statements: total, failed };
}

/**
 * What the changed-key record (issue 14) must hold after `messages`: per keyed table the
 * replica-identity key of every row touched (old and new key of a moved row), and the tables
 * changed without a usable key or truncated.
 */
function expectedChanges(messages: PgoutputMessage[]): { keys: string[]; whole: string[] } {
  const relations = new Map<number, RelationMessage>();
  const keys = new Set<string>();
  const whole = new Set<string>();
  const text = (v: TupleValue | undefined) => (typeof v === 'string' ? v : undefined);
  for (const m of messages) {
    if (m.tag === 'relation') relations.set(m.relationId, m);
    if (m.tag === 'truncate') for (const id of m.relationIds) whole.add(`${relations.get(id)!.schema}.${relations.get(id)!.name}`);
    if (m.tag !== 'insert' && m.tag !== 'update' && m.tag !== 'delete') continue;
    const rel = relations.get(m.relationId)!;
    const table = `${rel.schema}.${rel.name}`;
    const keyColumns = rel.columns.flatMap((c, i) => (c.partOfKey ? [i] : []));
    if (rel.replicaIdentity === 'full' || keyColumns.length === 0) {
      whole.add(table);
      continue;
    }
    const old = m.tag === 'insert' ? undefined : (m.oldTuple ?? m.oldKey);
    const tuples = m.tag === 'delete' ? [old!] : old ? [old, m.newTuple] : [m.newTuple];
    for (const tuple of tuples) keys.add(`${table} ${keyColumns.map((i) => text(tuple[i]) ?? text(old?.[i])).join(',')}`);
  }
  return { keys: [...keys].sort(), whole: [...whole].sort() };
}

describe('Applier', () => {
  let live: pg.Client;
  let randomCapture: Captured;

  it('applies a random workload so that the target equals the source, however flushes and chunks fall', async () => {
    const workload = await randomWorkload(20240229, 150);
    expect(workload.failed).toBeLessThan(workload.statements * 0.2);
    const captured = await capture();
    randomCapture = captured;
    expect(captured.commits.length).toBeGreaterThan(140);
    // The workload exercised what it is meant to.
    const names = new Map(captured.messages.flatMap((m) => (m.tag === 'relation' ? [[m.relationId, m.name] as const] : [])));
    const updates = captured.messages.filter((m) => m.tag === 'update');
    const toasted = updates.filter((u) => names.get(u.relationId) === 'docs' && u.newTuple.some((v) => v === UNCHANGED_TOAST));
    expect(toasted.length).toBeGreaterThan(20);
    expect(toasted.some((u) => u.oldKey)).toBe(true); // key change leaving the TOASTed value unchanged
    expect(captured.messages.filter((m) => m.tag === 'delete' && names.get(m.relationId) === 'nokey').length).toBeGreaterThan(10);
    expect(captured.messages.some((m) => m.tag === 'truncate')).toBe(true);
    expect(captured.rows).toBeGreaterThan(3000);
    const expected = await databaseHashes(source);
    const last = captured.commits.at(-1)!;

    const variants: { options: Partial<ApplierOptions>; flushEvery: number }[] = [
      { options: {}, flushEvery: 1 },
      { options: {}, flushEvery: Number.MAX_SAFE_INTEGER },
      { options: { maxChunkRows: 5, maxChunkBytes: 20_000 }, flushEvery: 7 },
    ];
    const stats = [];
    for (const [i, variant] of variants.entries()) {
      const { name, client } = await cloneTarget();
      const applier = new Applier(client, { migration: MIGRATION, conflictPolicy: 'error', ...variant.options });
      await replay(applier, captured.messages, variant.flushEvery);
      expect(await databaseHashes(target, name), `variant ${i}`).toEqual(expected);
      expect(await readAppliedLsn(client, MIGRATION)).toBe(last.endLsn);
      const row = await replicationRow(client);
      expect(row).toMatchObject({ lsn: last.endLsn, transactions: captured.commits.length, rows: captured.rows });
      expect(row.commit_us).toBe((last.commitTime + 946_684_800_000_000n).toString());
      expect(applier.stats).toMatchObject({ transactions: captured.commits.length, rows: captured.rows, conflictsIgnored: 0, conflictsOverwritten: 0 });
      stats.push(applier.stats);
      if (i === 0) live = client;
      else await close(client);
    }
    // Tiny chunks make many set-wise chunks; key changes that leave TOAST unchanged force some row-by-row ones.
    expect(stats[2]!.setWiseChunks).toBeGreaterThan(stats[0]!.setWiseChunks);
    expect(stats.every((s) => s.rowByRowChunks > 0)).toBe(true);
  });

  it('records the key of every row it changed, both keys of a moved row, and keyless or truncated tables as a whole, however chunks fall', async () => {
    const expected = expectedChanges(randomCapture.messages);
    expect(expected.keys.length).toBeGreaterThan(500);
    expect(expected.whole).toContain('app.nokey'); // REPLICA IDENTITY FULL; the others were truncated
    for (const variant of [{ maxChunkRows: 5, maxChunkBytes: 20_000, flushEvery: 7 }, { flushEvery: 1 }]) {
      const { client } = await cloneTarget();
      const applier = new Applier(client, { migration: MIGRATION, conflictPolicy: 'error', recordChangedKeys: true, ...variant });
      await replay(applier, randomCapture.messages, variant.flushEvery);
      const { rows: keys } = await client.query<{ key: string }>(
        "SELECT source_schema || '.' || source_table || ' ' || array_to_string(key, ',') AS key FROM pgferry.changed_keys WHERE migration = $1",
        [MIGRATION],
      );
      expect(keys.map((r) => r.key).sort(), `keys, chunks of ${variant.maxChunkRows ?? 'any size'}`).toEqual(expected.keys);
      const { rows: whole } = await client.query<{ table: string }>(
        "SELECT source_schema || '.' || source_table AS table FROM pgferry.changed_tables WHERE migration = $1 AND whole_lsn IS NOT NULL",
        [MIGRATION],
      );
      expect(whole.map((r) => r.table).sort()).toEqual(expected.whole);
      await close(client);
    }
  });

  it('keeps the keys of a big table through a chunk of more than 10,000 of them, and records a bulk change to most of a small table whole', async () => {
    const tables = `CREATE TABLE app.big_keys (id int PRIMARY KEY, v int);
      INSERT INTO app.big_keys SELECT g, 0 FROM generate_series(1, 300000) g;
      CREATE TABLE app.small_keys (id int PRIMARY KEY, v int);
      INSERT INTO app.small_keys SELECT g, 0 FROM generate_series(1, 12000) g;`;
    await source.sql(tables);
    await capture(); // the tables' creation is not what this test replays
    const { client } = await cloneTarget();
    await client.query(`SET session_replication_role = origin; ${tables} ANALYZE app.big_keys; ANALYZE app.small_keys; SET session_replication_role = replica`);
    await sourceTransaction([
      ['UPDATE app.big_keys SET v = 1 WHERE id <= 12000', []],
      ['UPDATE app.small_keys SET v = 1', []],
    ]);
    const captured = await capture();
    const applier = new Applier(client, { migration: MIGRATION, conflictPolicy: 'error', recordChangedKeys: true });
    await replay(applier, captured.messages);
    const { rows } = await client.query<{ source_table: string; keys: number; whole: boolean }>(
      `SELECT t.source_table, (SELECT count(*)::int FROM pgferry.changed_keys k WHERE (k.migration, k.source_table) = (t.migration, t.source_table)) AS keys,
              t.whole_lsn IS NOT NULL AS whole
         FROM pgferry.changed_tables t WHERE t.migration = $1 AND t.source_table IN ('big_keys', 'small_keys') ORDER BY 1`,
      [MIGRATION],
    );
    expect(rows).toEqual([
      { source_table: 'big_keys', keys: 12000, whole: false },
      { source_table: 'small_keys', keys: 0, whole: true },
    ]);
    await source.sql('DROP TABLE app.big_keys, app.small_keys');
    await capture();
    await close(client);
  });

  it('falls back to row by row when a unique value moves between rows within a chunk', async () => {
    const { rows } = await sourceClient.query<{ id: number; code: string }>('SELECT id, code FROM app.uniq ORDER BY id LIMIT 2');
    const [a, b] = rows as [{ id: number; code: string }, { id: number; code: string }];
    await sourceTransaction([
      [`UPDATE app.uniq SET code = 'swap-tmp' WHERE id = $1`, [a.id]],
      [`UPDATE app.uniq SET code = $1 WHERE id = $2`, [a.code, b.id]],
      [`UPDATE app.uniq SET code = $1 WHERE id = $2`, [b.code, a.id]],
      [`UPDATE app.docs SET counter = counter + 1`, []],
    ]);
    const captured = await capture();
    const applier = new Applier(live, { migration: MIGRATION, conflictPolicy: 'error' });
    await replay(applier, captured.messages);
    expect(await databaseHashes(target, live.database)).toEqual(await databaseHashes(source));
    expect(applier.stats.rowByRowChunks).toBe(1); // app.uniq
    expect(applier.stats.setWiseChunks).toBe(1); // app.docs
    const { rows: swapped } = await live.query('SELECT id, code FROM app.uniq WHERE id IN ($1, $2) ORDER BY id', [a.id, b.id]);
    expect(swapped).toEqual([
      { id: a.id, code: b.code },
      { id: b.id, code: a.code },
    ]);
  });

  it('stays set-wise for duplicate rows, -0 vs 0, a unique value passed from a deleted row to a new one, and TOAST patches', async () => {
    await sourceTransaction([
      [`INSERT INTO app.nokey SELECT 50, 'dup', 1.5, '{"d": 1}', '(5,5)' FROM generate_series(1, 3)`, []],
      [`INSERT INTO app.nokey VALUES (51, 'z', '-0', NULL, NULL), (51, 'z', '0', NULL, NULL)`, []],
    ]);
    await sourceTransaction([
      [`DELETE FROM app.nokey WHERE ctid = (SELECT ctid FROM app.nokey WHERE a = 50 LIMIT 1)`, []],
      [`UPDATE app.nokey SET b = 'dup2' WHERE ctid = (SELECT ctid FROM app.nokey WHERE a = 50 LIMIT 1)`, []],
      [`DELETE FROM app.nokey WHERE a = 51 AND f::text = '-0'`, []],
      [`DELETE FROM app.uniq WHERE code = (SELECT max(code) FROM app.uniq)`, []],
      [`UPDATE app.docs SET counter = counter + 1 WHERE id IN (SELECT id FROM app.docs ORDER BY id LIMIT 3)`, []],
    ]);
    const { rows } = await sourceClient.query(`SELECT code FROM app.uniq ORDER BY id DESC LIMIT 1`);
    await sourceTransaction([
      [`DELETE FROM app.uniq WHERE code = $1`, [rows[0].code]],
      [`INSERT INTO app.uniq (id, code, n) VALUES (99999, $1, 7)`, [rows[0].code]],
    ]);
    const captured = await capture();
    expect(captured.messages.filter((m) => m.tag === 'delete').length).toBe(4);
    const applier = new Applier(live, { migration: MIGRATION, conflictPolicy: 'error' });
    await replay(applier, captured.messages);
    expect(await databaseHashes(target, live.database)).toEqual(await databaseHashes(source));
    expect(applier.stats.rowByRowChunks).toBe(0);
    const { rows: left } = await live.query(`SELECT b, count(*)::int AS n FROM app.nokey WHERE a = 50 GROUP BY b ORDER BY b`);
    expect(left).toEqual([
      { b: 'dup', n: 1 },
      { b: 'dup2', n: 1 },
    ]);
    const { rows: zeros } = await live.query(`SELECT f::text AS f FROM app.nokey WHERE a = 51`);
    expect(zeros).toEqual([{ f: '0' }]);
  });

  it('updates composite columns set-wise, truncates only the parent TRUNCATE ONLY names, keeps reg* values by name, and applies a table without columns', async () => {
    await sourceTransaction([
      [`UPDATE app.shapes SET n = n + 1, p = ROW((p).x + 1, (p).label || '!')`, []],
      [`UPDATE app.shapes SET ps = array_append(ps, ROW(id, 'z')::app.pt), d = ROW(id * 2, 'd')::app.pt WHERE id % 2 = 0`, []],
      [`INSERT INTO app.shapes VALUES (100, NULL, '{}', NULL, 0), (101, ROW(NULL, NULL)::app.pt, ARRAY[NULL]::app.pt[], ROW(0, '')::app.pt, 1)`, []],
      [`DELETE FROM app.shapes WHERE id IN (3, 4)`, []],
    ]);
    await sourceTransaction([[`TRUNCATE ONLY app.family`, []]]);
    await sourceTransaction([
      [`INSERT INTO app.refs VALUES (1, 'app.docs', 'app.pt', 'lower(text)', 'english', 'app'), (2, 'public.plain_thing', 'integer[]', NULL, 'simple', 'public')`, []],
      [`UPDATE app.refs SET t = 'app.pt_pos' WHERE id = 2`, []],
      [`INSERT INTO app.no_columns SELECT FROM generate_series(1, 4)`, []],
      [`DELETE FROM app.no_columns WHERE ctid IN (SELECT ctid FROM app.no_columns LIMIT 2)`, []],
    ]);
    const captured = await capture();
    const applier = new Applier(live, { migration: MIGRATION, conflictPolicy: 'error' });
    await replay(applier, captured.messages);
    expect(await databaseHashes(target, live.database)).toEqual(await databaseHashes(source));
    expect(applier.stats.rowByRowChunks).toBe(0);
    const { rows } = await live.query(`SELECT (SELECT count(*)::int FROM ONLY app.family) AS parents, (SELECT count(*)::int FROM app.family_kid) AS kids`);
    expect(rows).toEqual([{ parents: 0, kids: 5 }]);
    expect((await live.query('SELECT count(*)::int AS n FROM app.no_columns')).rows).toEqual([{ n: 5 }]);
    const refs = `SELECT r::oid::regclass::text, t::text, f::text, c::text, ns::text FROM app.refs ORDER BY id`;
    expect((await live.query(refs)).rows).toEqual((await sourceClient.query(refs)).rows);
  });

  it('commits the checkpoint with the rows, and abort() before flush leaves neither', async () => {
    await sourceTransaction([[`INSERT INTO app.pairs VALUES (900, 'ckpt', 1)`, []]]);
    await sourceTransaction([
      [`UPDATE app.docs SET counter = counter + 10 WHERE id IN (SELECT id FROM app.docs ORDER BY id LIMIT 5)`, []],
      [`DELETE FROM app.nokey WHERE ctid = (SELECT ctid FROM app.nokey LIMIT 1)`, []],
    ]);
    await sourceTransaction([[`UPDATE app.pairs SET v = 2 WHERE a = 900`, []]]);
    const captured = await capture();
    expect(captured.commits).toHaveLength(3);
    const observer = await connectTarget(live.database!);
    const before = await databaseHashes(target, live.database);
    const lsnBefore = await readAppliedLsn(observer, MIGRATION);

    // Tiny chunks: the changes are written into the open target transaction, not yet committed.
    const first = new Applier(live, { migration: MIGRATION, conflictPolicy: 'error', maxChunkRows: 1 });
    for (const message of captured.messages) await first.handle(message);
    expect(first.atBoundary).toBe(true);
    expect(first.pendingTransactions).toBe(3);
    const { rows: inTransaction } = await live.query(`SELECT count(*)::int AS n FROM app.pairs WHERE a = 900`);
    expect(inTransaction[0].n).toBe(1); // visible inside the target transaction…
    expect(await databaseHashes(target, live.database)).toEqual(before); // …but not outside it
    await first.abort();
    expect(await databaseHashes(target, live.database)).toEqual(before);
    expect(await readAppliedLsn(observer, MIGRATION)).toBe(lsnBefore);

    const second = new Applier(live, { migration: MIGRATION, conflictPolicy: 'error', maxChunkRows: 1 });
    for (const message of captured.messages) {
      await second.handle(message);
      if (!second.atBoundary) await expect(second.flush()).rejects.toThrow(/between source transactions/);
    }
    const result = await second.flush();
    expect(result).toEqual({ appliedLsn: captured.commits[2]!.endLsn, transactions: 3, rows: captured.rows });
    expect(await second.flush()).toEqual({ appliedLsn: undefined, transactions: 0, rows: 0 });
    expect(await readAppliedLsn(observer, MIGRATION)).toBe(captured.commits[2]!.endLsn);
    expect(await databaseHashes(target, live.database)).toEqual(await databaseHashes(source));
    await close(observer);
  });

  it('refuses the checkpoint of a streamer that a newer one has replaced, committing nothing', async () => {
    await sourceTransaction([[`INSERT INTO app.pairs VALUES (901, 'fenced', 1)`, []]]);
    const captured = await capture();
    const { name, client } = await cloneTarget();
    try {
      await client.query('INSERT INTO pgferry.replication_status (migration, streamer_generation) VALUES ($1, 2)', [MIGRATION]);
      const before = await databaseHashes(target, name);
      const replaced = new Applier(client, { migration: MIGRATION, conflictPolicy: 'error', generation: () => 1 });
      for (const message of captured.messages) await replaced.handle(message);
      await expect(replaced.flush()).rejects.toMatchObject({ name: 'pgferry.StreamerFenced' });
      expect(await databaseHashes(target, name)).toEqual(before);
      const current = new Applier(client, { migration: MIGRATION, conflictPolicy: 'error', generation: () => 2 });
      await current.abort();
      for (const message of captured.messages) await current.handle(message);
      expect((await current.flush()).appliedLsn).toBe(captured.commits.at(-1)!.endLsn);
    } finally {
      await close(client);
    }
  });

  describe('conflict policy', () => {
    let phases: { setup: PgoutputMessage[]; conflicting: PgoutputMessage[]; commitLsns: string[]; setupEnd: string };

    beforeAll(async () => {
      // Only app.items changes here, so templates of the seed state fit.
      await sourceTransaction([[`INSERT INTO app.items VALUES (1, 'one'), (2, 'two'), (3, 'three'), (4, 'four')`, []]]);
      await sourceTransaction([[`UPDATE app.items SET v = 'TWO' WHERE id = 2`, []]]);
      await sourceTransaction([[`DELETE FROM app.items WHERE id = 3`, []]]);
      await sourceTransaction([[`INSERT INTO app.items VALUES (5, 'five'), (6, 'six')`, []]]);
      const { messages, commits } = await capture();
      const cut = messages.indexOf(commits[0]!) + 1;
      phases = { setup: messages.slice(0, cut), conflicting: messages.slice(cut), commitLsns: commits.map((c) => c.commitLsn), setupEnd: commits[0]!.endLsn };
    });

    /** Applies the first transaction, then makes the target diverge: rows 2 and 3 gone, a row 5 of its own. */
    async function diverged(policy: ApplierOptions['conflictPolicy']) {
      const { name, client } = await cloneTarget();
      const applier = new Applier(client, { migration: MIGRATION, conflictPolicy: policy });
      await replay(applier, phases.setup);
      await client.query(`DELETE FROM app.items WHERE id IN (2, 3); INSERT INTO app.items VALUES (5, 'target only')`);
      return { name, client, applier };
    }

    const items = async (client: pg.Client) => (await client.query('SELECT id, v FROM app.items ORDER BY id')).rows;

    it('error: throws ApplyConflictError naming table, key and transaction; commits nothing', async () => {
      const { client, applier } = await diverged('error');
      const error = await replay(applier, phases.conflicting).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(error).toBeInstanceOf(ApplyConflictError);
      const conflict = error as ApplyConflictError;
      expect(conflict.name).toBe('pgferry.ApplyConflict');
      expect(conflict.message).toContain('app.items');
      expect(conflict.message).toContain('id=2');
      expect(conflict.message).toContain('UPDATE');
      expect(conflict.message).toContain(phases.commitLsns[1]!);
      expect(conflict.message).toMatch(/cdc\.conflictPolicy to "ignore".*"overwrite"/);
      expect(conflict.details).toEqual({ table: 'app.items', operation: 'UPDATE', key: 'id=2', commitLsn: phases.commitLsns[1] });
      await expect(applier.flush()).rejects.toThrow(/call abort\(\)/);
      await applier.abort();
      expect(await items(client)).toEqual([
        { id: 1, v: 'one' },
        { id: 4, v: 'four' },
        { id: 5, v: 'target only' },
      ]);
      expect(await readAppliedLsn(client, MIGRATION)).toBe(phases.setupEnd);
      await close(client);
    });

    it('ignore: skips the conflicting changes and applies the rest', async () => {
      const { client, applier } = await diverged('ignore');
      await replay(applier, phases.conflicting);
      expect(await items(client)).toEqual([
        { id: 1, v: 'one' },
        { id: 4, v: 'four' },
        { id: 5, v: 'target only' },
        { id: 6, v: 'six' },
      ]);
      expect(applier.stats).toMatchObject({ conflictsIgnored: 3, conflictsOverwritten: 0 });
      await close(client);
    });

    it('overwrite: makes the target rows match the source', async () => {
      const { name, client, applier } = await diverged('overwrite');
      await replay(applier, phases.conflicting);
      expect(await items(client)).toEqual((await sourceClient.query('SELECT id, v FROM app.items ORDER BY id')).rows);
      expect((await databaseHashes(target, name))['app.items']).toBe((await databaseHashes(source))['app.items']);
      expect(applier.stats).toMatchObject({ conflictsIgnored: 0, conflictsOverwritten: 3 });
      expect(await readAppliedLsn(client, MIGRATION)).toBe((phases.conflicting.at(-1) as { endLsn: string }).endLsn);
      await close(client);
    });
  });

  it('rejects updates and deletes of a table without replica identity, naming the table and the fix', async () => {
    const applier = new Applier(live, { migration: MIGRATION, conflictPolicy: 'error' });
    await applier.handle({
      tag: 'relation',
      relationId: 4_000_000_000,
      schema: 'app',
      name: 'items',
      replicaIdentity: 'nothing',
      columns: [
        { name: 'id', typeOid: 23, typeMod: -1, partOfKey: false },
        { name: 'v', typeOid: 25, typeMod: -1, partOfKey: false },
      ],
    });
    await applier.handle({ tag: 'begin', finalLsn: '0/1', commitTime: 0n, xid: 1 });
    await expect(
      applier.handle({ tag: 'delete', relationId: 4_000_000_000, oldTuple: ['1', null] }),
    ).rejects.toThrow(/app\.items.*REPLICA IDENTITY FULL/);
    await applier.abort();
    await applier.handle({ tag: 'begin', finalLsn: '0/1', commitTime: 0n, xid: 1 });
    await expect(
      applier.handle({ tag: 'insert', relationId: 4_000_000_000, newTuple: [Buffer.from([0, 0, 0, 1]), null] }),
    ).rejects.toThrow(/binary format/);
    await applier.abort();
  });
});

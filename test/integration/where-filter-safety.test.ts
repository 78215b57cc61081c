/**
 * Issue 15 item 5: a `where` filter is one boolean expression, never a statement. Injection
 * attempts fail with an error naming the field, in spec validation, precheck, the load and the
 * comparison, and leave the source untouched; a legitimate filter still loads and compares.
 */
import type pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { listTables } from '../../engine/catalog/tables.js';
import { compareTables, type CompareTarget } from '../../engine/compare/index.js';
import { beginMigration, ensureControlSchema } from '../../engine/control/index.js';
import { planUnits, savePlan, targetFacts, targetOf } from '../../engine/load/planner.js';
import { runCopyWorker } from '../../engine/load/worker.js';
import { runPrecheck } from '../../engine/precheck/index.js';
import { exportSnapshot } from '../../engine/snapshot.js';
import { parseSpec, SpecInvalidError, type MigrationSpec } from '../../engine/spec/index.js';
import { oneStatement } from '../../engine/sql.js';
import { startClusters, type LocalCluster } from '../../local/dev/cluster.js';
import { DefaultSecretsProvider } from '../../platform/secrets/index.js';
import { scratchDir } from '../support/clusters.js';
import { runCli } from '../support/cli.js';

let source: LocalCluster;
let target: LocalCluster;
const scratch = scratchDir('where-safety');
const secrets = new DefaultSecretsProvider();

const DDL = 'CREATE TABLE items (id int PRIMARY KEY, region text, note text);';
const SOURCE_SETUP = `${DDL}
INSERT INTO items SELECT g, CASE WHEN g % 3 = 0 THEN 'eu' ELSE 'us' END, 'note ' || g FROM generate_series(1, 300) g;
CREATE TABLE secrets (id int, region text, note text);
INSERT INTO secrets VALUES (-1, 'eu', 'not to be read');
CREATE TABLE calls (at timestamptz DEFAULT now());
CREATE FUNCTION public.note_call() RETURNS boolean LANGUAGE sql VOLATILE AS $$ INSERT INTO public.calls DEFAULT VALUES; SELECT true $$;`;

const FIELD = 'objects.tables["public.items"].where';
const PWNED = 'true); CREATE TABLE public.pwned(x int); --';
const ATTACKS = {
  'closes the parenthesis and adds a statement': PWNED,
  'adds a second statement after ";"': 'true; CREATE TABLE public.pwned(x int)',
  'ends the read-only transaction and adds a statement': 'true); COMMIT; CREATE TABLE public.pwned(x int); --',
  'closes the parenthesis and adds a UNION': 'true) UNION SELECT id, region, note FROM public.secrets WHERE (true',
};
const WRITER = 'public.note_call()';
/** A legitimate filter with a trailing comment, which must not swallow the rest of the query. */
const LEGIT = "region = 'eu' AND note <> 'it''s; not a statement)' -- Europe only";

beforeAll(async () => {
  [source, target] = await startClusters([
    { major: 13, label: 'where-source' },
    { major: 17, label: 'where-target' },
  ]);
  await source.sql(SOURCE_SETUP);
});

afterAll(async () => {
  await Promise.all([source, target].map((c) => c?.stop()));
  scratch.remove();
});

const rawSpec = (name: string, where: string) => ({
  name,
  mode: 'full',
  source: { secret: scratch.secretFor('source', source) },
  target: { secret: scratch.secretFor('target', target) },
  objects: { include: [{ schema: 'public', tables: ['items'] }], tables: { 'public.items': { where } } },
});

/** A parsed spec carrying `where` as given: spec validation refuses the attacks, the later stages must refuse them on their own. */
function specWith(name: string, where: string): MigrationSpec {
  const spec = parseSpec(rawSpec(name, 'true'));
  spec.objects.tables['public.items']!.where = where;
  return spec;
}

/** The source holds no trace of an attempt: no new table, no call of the writing function. */
async function expectSourceUntouched(): Promise<void> {
  const [{ rows }] = (await source.sql(
    "SELECT to_regclass('public.pwned') IS NULL AS no_table, (SELECT count(*)::int FROM calls) AS calls",
  )) as [pg.QueryResult];
  expect(rows[0]).toEqual({ no_table: true, calls: 0 });
}

describe('a where filter that is not one expression', () => {
  it.each(Object.entries(ATTACKS))('is refused by spec validation when it %s, naming the field', (_, where) => {
    const parse = () => parseSpec(rawSpec('where-spec', where));
    expect(parse).toThrow(SpecInvalidError);
    expect(parse).toThrow(`${FIELD}: `);
  });

  it('is refused where the server would read a breakout that a careless scan misses: a -- comment ends at a carriage return', async () => {
    const where = 'true -- a comment\r) UNION SELECT 1 FROM public.secrets WHERE (true';
    for (const cluster of [source, target]) {
      const client = await cluster.connect();
      try {
        await client.query('CREATE TABLE IF NOT EXISTS public.secrets (id int); CREATE TABLE IF NOT EXISTS public.items (id int)');
        const { rows } = await client.query(oneStatement({ text: `EXPLAIN SELECT 1 FROM ONLY public.items WHERE (${where}\n)` }));
        expect(rows.map((r) => Object.values(r)[0]).join('\n')).toContain('secrets');
      } finally {
        await client.end();
      }
    }
    expect(() => parseSpec(rawSpec('where-spec', where))).toThrow(`${FIELD}: ")" closes a parenthesis`);
  });

  it('makes `pgferry precheck` exit 2 on the filter of the issue, naming the field, with the source untouched', async () => {
    const spec = scratch.writeJson('pwned-spec.json', rawSpec('where-cli', PWNED));
    const result = await runCli('precheck', spec);
    expect(result.code).toBe(2);
    expect(result.stdout + result.stderr).toContain(`${FIELD}: ")" closes a parenthesis the filter did not open`);
    await expectSourceUntouched();
  });

  it('cannot carry a second statement in a query sent through the extended protocol', async () => {
    const client = await source.connect();
    try {
      await expect(client.query(oneStatement({ text: 'SELECT 1; CREATE TABLE public.pwned(x int)' }))).rejects.toThrow(
        'cannot insert multiple commands into a prepared statement',
      );
    } finally {
      await client.end();
    }
    await expectSourceUntouched();
  });

  it.each([...Object.entries(ATTACKS), ['calls a function that writes', WRITER]])(
    'fails precheck when it %s, naming the field, and leaves the source untouched',
    async (_, where) => {
      const report = await runPrecheck(specWith('where-precheck', where), secrets);
      const selection = report.checks.find((c) => c.id === 'source.selection')!;
      expect(report.ok).toBe(false);
      expect(selection.status).toBe('fail');
      expect(selection.message).toContain(`${FIELD}: `);
      if (where === WRITER) expect(selection.message).toContain(`${FIELD}: cannot execute INSERT in a read-only transaction`);
      expect(selection.remediation).toContain('one boolean expression');
      await expectSourceUntouched();
    },
  );

  it('fails precheck when it is not boolean', async () => {
    const report = await runPrecheck(specWith('where-precheck', 'id + 1'), secrets);
    expect(report.checks.find((c) => c.id === 'source.selection')!.message).toContain(`${FIELD}: argument of WHERE must be type boolean`);
  });

  // The server lexes these as pgferry does: ";" and ")" inside strings, quoted names and comments are not structure.
  it.each([
    LEGIT,
    "note <> E'it\\'s ; ) \\\\' AND region = 'eu'",
    'note <> $$ ; ) $$ AND note <> $q$ $$ ( $q$',
    'id > 0 /* a ; nested /* ) */ comment */',
    "note <> U&'d\\0061t ; )' AND \"region\" IS NOT NULL",
  ])('passes precheck when it is one boolean expression: %s', async (where) => {
    const report = await runPrecheck(parseSpec(rawSpec('where-precheck', where)), secrets);
    expect(report.checks.find((c) => c.id === 'source.selection')).toMatchObject({ status: 'pass' });
  });
});

describe('the load and the comparison with a where filter', () => {
  let holder: pg.Client;
  let snapshot: string;

  beforeAll(async () => {
    holder = await source.connect();
    snapshot = await exportSnapshot(holder);
  });

  afterAll(async () => {
    await holder.query('COMMIT');
    await holder.end();
  });

  /** Plans `spec` into a fresh target database and runs one copy worker (one attempt per unit). */
  async function load(spec: MigrationSpec): Promise<{ db: string; units: { state: string; last_error: string | null }[] }> {
    const db = spec.name.replace(/-/g, '_');
    await target.sql(`CREATE DATABASE ${db}`);
    await target.sql(DDL, db);
    const [src, tgt] = [await source.connect(), await target.connect(db)];
    try {
      await ensureControlSchema(tgt);
      await beginMigration(tgt, spec.name, spec);
      const tables = await listTables(src, spec.objects);
      const units = planUnits({ tables, target: await targetFacts(tgt, tables.map(targetOf)), spec, sourceVersionNum: 130000 });
      await savePlan(tgt, spec.name, tables, units);
      await runCopyWorker({
        migration: spec.name,
        snapshot,
        maxAttempts: 1,
        connectSource: () => source.connect(),
        connectTarget: () => target.connect(db),
        backoffMs: () => 10,
      });
      const { rows } = await tgt.query('SELECT state, last_error FROM pgferry.units WHERE migration = $1', [spec.name]);
      return { db, units: rows };
    } finally {
      await Promise.all([src.end(), tgt.end()]);
    }
  }

  const compared = (where: string): CompareTarget => ({
    source: { schema: 'public', name: 'items' },
    target: { schema: 'public', name: 'items' },
    columns: ['id', 'region', 'note'],
    primaryKey: ['id'],
    where,
  });
  const compare = (where: string, db: string) =>
    compareTables(() => source.connect(), () => target.connect(db), [compared(where)], {
      method: 'checksum',
      chunkRows: 40,
      maxDifferences: 10,
      parallelism: 1,
      snapshot,
    });

  it('loads and compares exactly the filtered rows of a legitimate filter', async () => {
    const { db, units } = await load(parseSpec(rawSpec('where-legit', LEGIT)));
    expect(units).toEqual([{ state: 'done', last_error: null }]);
    const [loaded] = (await target.sql('SELECT array_agg(id ORDER BY id) AS ids FROM items', db)) as [pg.QueryResult];
    const [wanted] = (await source.sql("SELECT array_agg(id ORDER BY id) AS ids FROM items WHERE region = 'eu'")) as [pg.QueryResult];
    expect(wanted.rows[0].ids).toHaveLength(100);
    expect(loaded.rows[0].ids).toEqual(wanted.rows[0].ids);
    const [result] = await compare(LEGIT, db);
    expect(result).toMatchObject({ status: 'match', sourceRows: 100, targetRows: 100 });
  });

  it.each([...Object.entries(ATTACKS), ['calls a function that writes', WRITER]])(
    'fails the load and the comparison when it %s, with a readable error, and leaves the source untouched',
    async (label, where) => {
      const name = `where-load-${Object.keys(ATTACKS).indexOf(label) + 1}`;
      const { db, units } = await load(specWith(name, where));
      const reason = where === WRITER ? 'cannot execute INSERT in a read-only transaction' : `${FIELD}: `;
      expect(units).toEqual([{ state: 'failed', last_error: expect.stringContaining(reason) }]);
      const [count] = (await target.sql('SELECT count(*)::int AS n FROM items', db)) as [pg.QueryResult];
      expect(count.rows[0].n).toBe(0);
      await expect(compare(where, db)).rejects.toThrow(reason);
      await expectSourceUntouched();
    },
  );
});

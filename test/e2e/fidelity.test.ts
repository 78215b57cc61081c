/**
 * Issue 13 (Fidelity): the every-kind fixture (test/fixtures/fidelity) migrated through the
 * workflow, and the target compared with the source by the tests' own oracles: pg_dump 15's
 * sorted schema where both servers are 15, catalog queries across majors, and every table's,
 * materialized view's and large object's contents as sorted COPY text. Differences are
 * collected with expect.soft so that one run lists all of them.
 */
import type pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readReplicationStatus, requestCutover } from '../../engine/control/index.js';
import { startClusters, type LocalCluster } from '../../local/dev/cluster.js';
import { runLocalWorkflow, type LocalRunOptions, type LocalRunResult } from '../../local/runner/index.js';
import { runCli } from '../support/cli.js';
import { scratchDir } from '../support/clusters.js';
import {
  createFidelityDatabase,
  createFidelityRoles,
  dataDifferences,
  fidelityDataOf,
  lineDifferences,
  pgDumpRestore,
  pgDumpSchemaLines,
  runFidelityChanges,
} from '../support/fidelity.js';
import { catalogDifferences, fidelityCatalog } from '../support/fidelity-catalog.js';
import { waitFor } from '../support/wait.js';

let pg13: LocalCluster;
let pg15: LocalCluster;
let pg17: LocalCluster;
let pg18: LocalCluster;
const scratch = scratchDir('fidelity');

beforeAll(async () => {
  [pg13, pg15, pg17, pg18] = await startClusters([
    { major: 13, label: 'fid13' },
    { major: 15, label: 'fid15' },
    { major: 17, label: 'fid17' },
    { major: 18, label: 'fid18' },
  ]);
  await Promise.all([
    createFidelityDatabase(pg13, 'fidelity'),
    createFidelityDatabase(pg15, 'fidelity').then(() => createFidelityDatabase(pg15, 'fidelity_cdc', { cdc: true })),
    // The roles exist on 17 (owners are kept); on 18 the run creates them (schema.sync.roles).
    createFidelityRoles(pg17),
  ]);
}, 300_000);

afterAll(async () => {
  await Promise.all([pg13, pg15, pg17, pg18].map((c) => c?.stop()));
  scratch.remove();
});

/** One migration with its comparisons: a few minutes on two busy cores at most. */
const RUN_TIMEOUT = 600_000;
const runOptions: LocalRunOptions = { retryIntervalOverrides: { CopyWorker: 0 } };

/** Options every fidelity run gets, on top of the defaults (ALWAYS/REPLICA triggers stay disabled until cutover by default). */
const FIDELITY_OPTIONS: Record<string, unknown> = {};

/**
 * PostgreSQL has no way to write a materialized view's rows but REFRESH, so the target's are
 * refreshed from the migrated data: a source view that is stale (its tables changed since its
 * last refresh) or volatile differs, and the run must name each one, with why, in its report.
 */
const STALE_OR_VOLATILE_VIEWS = ['fid.taken_at', 'fid.thing_stats', 'fid.thing_stats_total'];

const isObject = (value: unknown): value is Record<string, unknown> => typeof value === 'object' && value !== null && !Array.isArray(value);
const merged = (base: Record<string, unknown>, extra: Record<string, unknown>): Record<string, unknown> =>
  Object.fromEntries(
    [...new Set([...Object.keys(base), ...Object.keys(extra)])].map((key) => {
      const [a, b] = [base[key], extra[key]];
      return [key, isObject(a) && isObject(b) ? merged(a, b) : b === undefined ? a : b];
    }),
  );

function specFor(name: string, mode: 'full' | 'full+cdc', source: LocalCluster, sourceDb: string, target: LocalCluster, targetDb: string, extra: Record<string, unknown> = {}) {
  const spec = {
    name,
    mode,
    source: { secret: scratch.secretFor(`${name}-source`, source), database: sourceDb },
    target: { secret: scratch.secretFor(`${name}-target`, target), database: targetDb },
    fullLoad: { parallelism: 2 },
  };
  return merged(merged(spec, FIDELITY_OPTIONS), extra) as typeof spec;
}

async function targetQuery<T extends pg.QueryResultRow>(target: LocalCluster, database: string, sql: string, values: unknown[]): Promise<T[]> {
  const client = await target.connect(database);
  try {
    return (await client.query<T>(sql, values)).rows;
  } catch {
    return []; // no control schema yet
  } finally {
    await client.end();
  }
}

/**
 * Waits for the run to end. A run that pauses (a CDC failure pauses it; its runner waits to be
 * resumed) is abandoned with `pgferry stop --drop`, which ends it and drops its slot; its
 * result's cause then gives the pause's.
 */
async function settle(run: Promise<LocalRunResult>, spec: ReturnType<typeof specFor>, target: LocalCluster): Promise<LocalRunResult> {
  let result: LocalRunResult | undefined;
  void run.then(
    (r) => (result = r),
    (error: unknown) => (result = { status: 'FAILED', error: String(error) }),
  );
  const paused = async () =>
    (await targetQuery<{ phase: string }>(target, spec.target.database, 'SELECT phase FROM pgferry.migrations WHERE name = $1', [spec.name]))[0]?.phase === 'paused';
  await waitFor(`run ${spec.name} to end or pause`, async () => result ?? (await paused()), 600_000, 500);
  if (result) return result;
  await runCli('stop', scratch.writeJson(`${spec.name}.json`, spec), '--drop');
  return run; // failed as pgferry.Abandoned, its cause the pause's
}

/** What the run reports as not migrated or skipped: for this fixture, nothing. */
const notCarried = (target: LocalCluster, database: string, name: string) =>
  targetQuery<{ kind: string; identity: string; status: string; detail: string }>(
    target,
    database,
    `SELECT kind, identity, status, detail FROM pgferry.schema_objects
      WHERE migration = $1 AND status IN ('not_migrated', 'skipped') ORDER BY kind, identity`,
    [name],
  );

const comparisonsNotMatching = (target: LocalCluster, database: string, name: string) =>
  targetQuery(target, database, `SELECT source_table, status FROM pgferry.comparisons WHERE migration = $1 AND status <> 'match' ORDER BY 1`, [name]);

/** The data is identical but for the materialized views `named` (the report names those). */
async function expectSameData(source: LocalCluster, sourceDb: string, target: LocalCluster, targetDb: string, named: string[] = []) {
  const [expected, actual] = await Promise.all([fidelityDataOf(source, sourceDb), fidelityDataOf(target, targetDb)]);
  expect(Object.keys(expected).length).toBeGreaterThan(30);
  const differences = dataDifferences(expected, actual);
  for (const view of named) delete differences[view];
  expect.soft(differences, 'data: tables, materialized views, large objects, sequences').toEqual({});
}

function expectSameDump(source: LocalCluster, sourceDb: string, target: LocalCluster, targetDb: string) {
  const [expected, actual] = [pgDumpSchemaLines(source, sourceDb), pgDumpSchemaLines(target, targetDb)];
  expect(expected.length).toBeGreaterThan(1000);
  expect.soft(lineDifferences(expected, actual), 'pg_dump --schema-only, sorted lines').toEqual({ onlyInSource: [], onlyInTarget: [] });
}

async function expectSameCatalog(source: LocalCluster, sourceDb: string, target: LocalCluster, targetDb: string) {
  const options = { unqualifiedViews: source.major < 16, olderThan14: source.major < 14 };
  const [s, t] = [await source.connect(sourceDb), await target.connect(targetDb)];
  try {
    const [expected, actual] = await Promise.all([fidelityCatalog(s, options), fidelityCatalog(t, options)]);
    expect.soft(catalogDifferences(expected, actual), 'catalog').toEqual({});
  } finally {
    await Promise.all([s.end(), t.end()]);
  }
}

/**
 * The run succeeded, its own comparison found nothing, and it left nothing out but the contents
 * of the materialized views that differ from the source's, each named with why. Returns those views.
 */
async function expectCleanRun(result: LocalRunResult, target: LocalCluster, targetDb: string, name: string): Promise<string[]> {
  expect.soft(result, JSON.stringify(result)).toMatchObject({ status: 'SUCCEEDED' });
  const leftOut = await notCarried(target, targetDb, name);
  const differingViews = leftOut.filter((o) => o.kind === 'materialized view data' && o.status === 'not_migrated');
  // A materialized view never populated on the source stays unpopulated on the target: there is no data to carry.
  const unpopulated = (o: { kind: string; detail: string }) => o.kind === 'materialized view data' && o.detail === 'not populated on the source';
  expect.soft(leftOut.filter((o) => !differingViews.includes(o) && !unpopulated(o)), 'objects not migrated, skipped or failed').toEqual([]);
  for (const view of differingViews) expect.soft(view.detail, view.identity).toContain('its contents differ from the source');
  expect.soft(await comparisonsNotMatching(target, targetDb, name), "pgferry's own comparison").toEqual([]);
  return differingViews.map((o) => o.identity);
}

/** What pg_dump | psql cannot carry, and so what the oracles must find in such a copy, and nothing else. */
const PG_DUMP_SHORTFALLS = {
  // A child added with INHERIT keeps its own column order; pg_dump recreates it with INHERITS.
  columnOrder: ['fid.inh_late'],
  // Refreshed on restore: stale and volatile contents change; the one its owner's FORCE RLS empties cannot be refreshed with row_security off.
  materializedViews: ['fid.owner_sees', 'fid.taken_at', 'fid.thing_stats', 'fid.thing_stats_total'],
};

describe('the oracles', () => {
  it('find in a pg_dump | psql copy (15 → 15, 13 → 17) exactly what pg_dump cannot carry, and nothing else', async () => {
    await pg15.sql('CREATE DATABASE oracle_copy');
    await pg17.sql('CREATE DATABASE oracle_from13');
    const rlsRefresh = 'ERROR:  query would be affected by row-level security policy for table "things"';
    expect(pgDumpRestore(pg15, 'fidelity', pg15, 'oracle_copy')).toEqual([rlsRefresh]);
    expect(pgDumpRestore(pg13, 'fidelity', pg17, 'oracle_from13')).toEqual([rlsRefresh]);

    const dump = lineDifferences(pgDumpSchemaLines(pg15, 'fidelity'), pgDumpSchemaLines(pg15, 'oracle_copy'));
    expect(dump).toEqual({ onlyInSource: ['    extra text,', '    id integer'], onlyInTarget: ['    extra text', '    id integer,'] });
    for (const [source, target, database] of [
      [pg15, pg15, 'oracle_copy'],
      [pg13, pg17, 'oracle_from13'],
    ] as const) {
      const [expected, actual] = await Promise.all([fidelityDataOf(source, 'fidelity'), fidelityDataOf(target, database)]);
      expect(Object.keys(dataDifferences(expected, actual)).sort()).toEqual([...PG_DUMP_SHORTFALLS.columnOrder, ...PG_DUMP_SHORTFALLS.materializedViews].sort());
      const options = { unqualifiedViews: source.major < 16, olderThan14: source.major < 14 };
      const [s, t] = [await source.connect('fidelity'), await target.connect(database)];
      try {
        const catalog = catalogDifferences(await fidelityCatalog(s, options), await fidelityCatalog(t, options));
        expect(Object.keys(catalog).sort()).toEqual(['columns', 'materializedViews']);
        expect(new Set(catalog.columns!.onlyInSource.map((row) => JSON.parse(row).rel))).toEqual(new Set(PG_DUMP_SHORTFALLS.columnOrder));
        expect(catalog.materializedViews).toEqual({
          onlyInSource: ['{"rel":"fid.owner_sees","relispopulated":true}'],
          onlyInTarget: ['{"rel":"fid.owner_sees","relispopulated":false}'],
        });
      } finally {
        await Promise.all([s.end(), t.end()]);
      }
    }
  }, RUN_TIMEOUT);
});

describe('the every-kind fixture, mode "full"', () => {
  it('15 → 15: pg_dump cannot tell the target from the source, and every table, materialized view and large object is identical', async () => {
    await pg15.sql('CREATE DATABASE fidelity_copy');
    const spec = specFor('fidelity-15-15', 'full', pg15, 'fidelity', pg15, 'fidelity_copy');
    const result = await settle(runLocalWorkflow(spec, runOptions), spec, pg15);
    const named = await expectCleanRun(result, pg15, 'fidelity_copy', spec.name);
    expect.soft(named.sort(), 'materialized views whose contents differ, named in the report').toEqual(STALE_OR_VOLATILE_VIEWS);
    expectSameDump(pg15, 'fidelity', pg15, 'fidelity_copy');
    await expectSameData(pg15, 'fidelity', pg15, 'fidelity_copy', named);
  }, RUN_TIMEOUT);

  it('13 → 17: equal by catalog, the data identical', async () => {
    await pg17.sql('CREATE DATABASE fidelity_from13');
    const spec = specFor('fidelity-13-17', 'full', pg13, 'fidelity', pg17, 'fidelity_from13');
    const result = await settle(runLocalWorkflow(spec, runOptions), spec, pg17);
    const named = await expectCleanRun(result, pg17, 'fidelity_from13', spec.name);
    expect.soft(named.sort(), 'materialized views whose contents differ, named in the report').toEqual(STALE_OR_VOLATILE_VIEWS);
    await expectSameCatalog(pg13, 'fidelity', pg17, 'fidelity_from13');
    await expectSameData(pg13, 'fidelity', pg17, 'fidelity_from13', named);
  }, RUN_TIMEOUT);

  it('15 → 18, the roles created by schema.sync.roles: equal by catalog, the data identical', async () => {
    await pg18.sql('CREATE DATABASE fidelity_from15');
    const spec = specFor('fidelity-15-18', 'full', pg15, 'fidelity', pg18, 'fidelity_from15', { schema: { sync: { roles: true } } });
    const result = await settle(runLocalWorkflow(spec, runOptions), spec, pg18);
    const named = await expectCleanRun(result, pg18, 'fidelity_from15', spec.name);
    expect.soft(named.sort(), 'materialized views whose contents differ, named in the report').toEqual(STALE_OR_VOLATILE_VIEWS);
    await expectSameCatalog(pg15, 'fidelity', pg18, 'fidelity_from15');
    await expectSameData(pg15, 'fidelity', pg18, 'fidelity_from15', named);
  }, RUN_TIMEOUT);
});

describe('the every-kind fixture, mode "full+cdc" with the change script', () => {
  it('15 → 15: identical after cutover, schema, data, large objects and materialized views', async () => {
    await pg15.sql('CREATE DATABASE fidelity_cdc_copy');
    const spec = specFor('fidelity-cdc', 'full+cdc', pg15, 'fidelity_cdc', pg15, 'fidelity_cdc_copy', { cdc: { heartbeatTimeoutSeconds: 10 } });
    let result: LocalRunResult | undefined;
    const run = runLocalWorkflow(spec, runOptions);
    void run.then(
      (r) => (result = r),
      () => undefined, // settle() reports it
    );
    const control = await pg15.connect('fidelity_cdc_copy');
    try {
      const streaming = await waitFor(
        'the streamer to apply (or the run to end)',
        async () => result ?? (await readReplicationStatus(control, spec.name).catch(() => undefined))?.streamingSince,
        300_000,
        200,
      );
      expect(streaming, `the run ended before streaming: ${JSON.stringify(result)}`).not.toHaveProperty('status');
      await runFidelityChanges(pg15, 'fidelity_cdc');
      await requestCutover(control, spec.name);
    } finally {
      await control.end();
    }
    const named = await expectCleanRun(await settle(run, spec, pg15), pg15, 'fidelity_cdc_copy', spec.name);
    // Refreshed at cutover on both sides' final data: only what the source left stale since, and the volatile one, differ.
    expect.soft(named, 'the volatile materialized view is named').toContain('fid.taken_at');
    const [slots] = await pg15.sql("SELECT coalesce(array_agg(slot_name::text), '{}') AS names FROM pg_replication_slots WHERE slot_name LIKE 'pgferry%'");
    expect.soft(slots!.rows[0].names, 'replication slots left on the source').toEqual([]);
    expectSameDump(pg15, 'fidelity_cdc', pg15, 'fidelity_cdc_copy');
    await expectSameCatalog(pg15, 'fidelity_cdc', pg15, 'fidelity_cdc_copy');
    await expectSameData(pg15, 'fidelity_cdc', pg15, 'fidelity_cdc_copy', named);
  }, RUN_TIMEOUT);
});

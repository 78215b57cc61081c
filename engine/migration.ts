/**
 * The workflow's short steps around the full load, as engine functions the Lambdas wrap:
 * pre-data, planning, finishing the load, finishing the migration, and cleanup on failure.
 */
import type pg from 'pg';
import { connectSide, type SecretsProvider } from './connect/index.js';
import { beginMigration, ensureControlSchema, recordEvent, setPhase } from './control/index.js';
import { PgferryError } from './errors.js';
import { planUnits, savePlan, targetFacts, targetOf } from './load/planner.js';
import { copySequenceValues, loadTimeIndexJobs, migratePreData, recordSchemaObjects } from './schema/index.js';
import { saveIndexJobs } from './load/index-jobs.js';
import { dataTables, listTables } from './catalog/tables.js';
import { describeMismatches, loadComparisons } from './compare/index.js';
import type { MigrationSpec } from './spec/index.js';

async function withSides<T>(
  spec: MigrationSpec,
  secrets: SecretsProvider,
  sides: { source?: boolean; target?: boolean },
  body: (clients: { source: pg.Client; target: pg.Client }) => Promise<T>,
): Promise<T> {
  const source = sides.source ? await connectSide('source', spec.source, secrets, { applicationName: 'pgferry' }) : undefined;
  try {
    const target = sides.target ? await connectSide('target', spec.target, secrets, { applicationName: 'pgferry' }) : undefined;
    try {
      return await body({ source: source!, target: target! });
    } finally {
      await target?.end();
    }
  } finally {
    await source?.end();
  }
}

const countBy = <T>(items: T[], key: (item: T) => string) =>
  items.reduce<Record<string, number>>((counts, item) => ((counts[key(item)] = (counts[key(item)] ?? 0) + 1), counts), {});

export async function schemaPreDataStep(spec: MigrationSpec, secrets: SecretsProvider) {
  return withSides(spec, secrets, { source: true, target: true }, async ({ source, target }) => {
    await ensureControlSchema(target);
    await beginMigration(target, spec.name, spec);
    const result = await migratePreData(source, target, spec);
    await recordSchemaObjects(target, spec.name, 'pre-data', result.objects);
    await recordEvent(target, spec.name, 'info', `pre-data: ${result.objects.length} objects`);
    return { tables: dataTables(result.tables).length, objects: countBy(result.objects, (o) => o.status) };
  });
}

export async function planFullLoadStep(spec: MigrationSpec, secrets: SecretsProvider) {
  return withSides(spec, secrets, { source: true, target: true }, async ({ source, target }) => {
    await setPhase(target, spec.name, 'load');
    const tables = await listTables(source, spec.objects);
    const { rows } = await source.query<{ num: string }>("SELECT current_setting('server_version_num') AS num");
    const facts = await targetFacts(target, dataTables(tables).map(targetOf));
    const units = planUnits({ tables, target: facts, spec, sourceVersionNum: Number(rows[0]!.num) });
    await savePlan(target, spec.name, tables, units);
    await saveIndexJobs(target, spec.name, await loadTimeIndexJobs(source, spec));
    const workerCount = Math.max(1, Math.min(spec.fullLoad.parallelism, units.length));
    return { units: units.length, workers: Array.from({ length: workerCount }, (_, i) => i + 1) };
  });
}

export class LoadFailedError extends PgferryError {
  constructor(message: string) {
    super('pgferry.LoadFailed', message);
  }
}

export async function finishFullLoadStep(spec: MigrationSpec, secrets: SecretsProvider) {
  return withSides(spec, secrets, { source: true, target: true }, async ({ source, target }) => {
    const { rows } = await target.query(
      `SELECT u.id, u.source_schema, u.source_table, u.state, p.attempts, u.last_error
         FROM pgferry.units u JOIN pgferry.unit_progress p USING (migration, id)
        WHERE u.migration = $1 AND u.state <> 'done' ORDER BY u.id`,
      [spec.name],
    );
    if (rows.length > 0) {
      const lines = rows.map(
        (u) => `  - unit ${u.id} (${u.source_schema}.${u.source_table}): ${u.state} after ${u.attempts} attempt(s)${u.last_error ? `: ${u.last_error}` : ''}`,
      );
      throw new LoadFailedError(`The full load did not finish: ${rows.length} work unit(s) not copied.\n${lines.join('\n')}`);
    }
    const sequences = spec.schema.sync.sequences ? await copySequenceValues(source, target, spec) : [];
    await recordSchemaObjects(target, spec.name, 'sequences', sequences);
    const { rows: totals } = await target.query(
      `SELECT count(*)::int AS units, coalesce(sum(rows_copied), 0)::float8 AS rows, coalesce(sum(bytes_copied), 0)::float8 AS bytes
         FROM pgferry.units WHERE migration = $1`,
      [spec.name],
    );
    return { ...totals[0], sequences: sequences.length } as { units: number; rows: number; bytes: number; sequences: number };
  });
}

export class CompareMismatchError extends PgferryError {
  constructor(message: string) {
    super('pgferry.CompareMismatch', message);
  }
}

export async function finishMigrationStep(spec: MigrationSpec, secrets: SecretsProvider) {
  return withSides(spec, secrets, { target: true }, async ({ target }) => {
    const comparisons = await loadComparisons(target, spec.name);
    const mismatches = describeMismatches(comparisons);
    if (mismatches) {
      const count = comparisons.filter((c) => c.status === 'mismatch').length;
      const message = `The comparison found differences in ${count} table(s):\n${mismatches.replace(/^/gm, '  - ')}`;
      await setPhase(target, spec.name, 'failed', message);
      throw new CompareMismatchError(message);
    }
    await setPhase(target, spec.name, 'done');
    await recordEvent(target, spec.name, 'info', 'migration done');
    return { tables: comparisons.length, compared: spec.compare.enabled };
  });
}

/** Marks the migration failed (which also releases the snapshot holder). Best effort: it never hides the original error. */
export async function cleanupStep(spec: MigrationSpec, secrets: SecretsProvider, failure: { Error?: string; Cause?: string }) {
  try {
    return await withSides(spec, secrets, { target: true }, async ({ target }) => {
      const exists = await target.query("SELECT to_regclass('pgferry.migrations') IS NOT NULL AS ok");
      if (!exists.rows[0]?.ok) return { cleaned: false };
      await setPhase(target, spec.name, 'failed', `${failure.Error ?? 'error'}: ${failure.Cause ?? ''}`.slice(0, 10_000));
      await recordEvent(target, spec.name, 'error', `${failure.Error ?? 'error'}`);
      return { cleaned: true };
    });
  } catch (error) {
    return { cleaned: false, reason: (error as Error).message };
  }
}

/** Compares every loaded table, source (at the load's snapshot) against target; results go to the control schema. */
import { listTables, qualified } from '../engine/catalog/tables.js';
import { migrationState, setPhase } from '../engine/control/index.js';
import { compareTables, saveComparison, type CompareTarget } from '../engine/compare/index.js';
import { runTask } from './task.js';

await runTask('compare', async ({ migration, spec, connectSource, connectTarget, log }) => {
  if (!spec.compare.enabled) {
    log('comparison disabled by the spec');
    return;
  }
  const control = await connectTarget();
  const source = await connectSource();
  try {
    await setPhase(control, migration, 'compare');
    // After a full load the source is read at the load's snapshot; with CDC, at cutover, as it is now (fenced or drained).
    const snapshot = spec.mode === 'full' ? ((await migrationState(control, migration))?.snapshot ?? undefined) : undefined;
    const primaryKeys = new Map((await listTables(source, spec.objects)).map((t) => [qualified(t), t.primaryKey]));
    const { rows } = await control.query(
      `SELECT DISTINCT ON (source_schema, source_table) source_schema, source_table, target_schema, target_table, columns, where_clause
         FROM pgferry.units WHERE migration = $1 ORDER BY source_schema, source_table`,
      [migration],
    );
    const tables: CompareTarget[] = rows.map((row) => ({
      source: { schema: row.source_schema, name: row.source_table },
      target: { schema: row.target_schema, name: row.target_table },
      columns: row.columns,
      primaryKey: primaryKeys.get(`${row.source_schema}.${row.source_table}`) ?? null,
      where: row.where_clause ?? undefined,
    }));
    const results = await compareTables(connectSource, connectTarget, tables, {
      method: spec.compare.method,
      chunkRows: spec.compare.chunkRows,
      maxDifferences: spec.compare.maxDifferencesReported,
      parallelism: spec.fullLoad.parallelism,
      snapshot,
      onTable: (result) => log(`${qualified(result.source)}: ${result.status} (${result.sourceRows} rows)`),
    });
    for (const result of results) await saveComparison(control, migration, result);
  } finally {
    await Promise.all([control.end(), source.end()]);
  }
});

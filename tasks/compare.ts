/**
 * Compares every loaded table, source against target; results go to the control schema.
 * After a full load the source is read at the load's snapshot. With CDC the final comparison
 * runs after cutover has drained (source as it is now); the live one (PGFERRY_LIVE=1) runs while
 * changes still flow and compares differing tables again once the target has applied what the
 * source had when they were read, so only lasting differences are reported.
 */
import { copiedColumns, dataTables, listTables, tableOptions } from '../engine/catalog/tables.js';
import { qualified } from '../engine/sql.js';
import { migrationState, readReplicationStatus, recordEvent, recordLiveComparison, saveComparison, setPhase } from '../engine/control/index.js';
import { parseLsn } from '../engine/cdc/pgoutput.js';
import { compareTables, type CompareTarget, type TableComparison } from '../engine/compare/index.js';
import { currentWalLsn } from '../engine/cutover/index.js';
import { runTask } from './task.js';

/** Rechecks of tables that differed while changes were flowing. */
const LIVE_RECHECKS = 3;
const CATCH_UP_WAIT_MS = 60_000;

await runTask('compare', async ({ migration, spec, env, connectSource, connectTarget, log }) => {
  if (!spec.compare.enabled) {
    log('comparison disabled by the spec');
    return;
  }
  const live = env.PGFERRY_LIVE === '1';
  const control = await connectTarget();
  const source = await connectSource();
  try {
    if (!live) await setPhase(control, migration, 'compare');
    const snapshot = spec.mode === 'full' ? ((await migrationState(control, migration))?.snapshot ?? undefined) : undefined;
    const sourceTables = await listTables(source, spec.objects);
    const primaryKeys = new Map(sourceTables.map((t) => [qualified(t), t.primaryKey]));
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
    if (spec.mode === 'cdc') {
      // No load planned the tables: compare every selected one, under the same name on the target.
      for (const table of dataTables(sourceTables)) {
        const ref = { schema: table.schema, name: table.name };
        tables.push({ source: ref, target: ref, columns: copiedColumns(table, tableOptions(spec.objects, table)), primaryKey: table.primaryKey });
      }
    }
    const compare = (subset: CompareTarget[]) =>
      compareTables(connectSource, connectTarget, subset, {
        method: spec.compare.method,
        chunkRows: spec.compare.chunkRows,
        maxDifferences: spec.compare.maxDifferencesReported,
        parallelism: spec.fullLoad.parallelism,
        snapshot,
        onTable: (result) => log(`${qualified(result.source)}: ${result.status} (${result.sourceRows} rows)`),
      });
    const results = new Map((await compare(tables)).map((r) => [qualified(r.source), r]));
    if (live) {
      for (let round = 1; round <= LIVE_RECHECKS; round++) {
        const differing = tables.filter((t) => results.get(qualified(t.source))?.status === 'mismatch');
        if (differing.length === 0) break;
        // Differences may be changes in flight: wait until the target holds what the source has now, then look again.
        await caughtUpTo(await currentWalLsn(source));
        for (const result of await compare(differing)) {
          results.set(qualified(result.source), { ...result, note: liveNote(result, round) });
        }
      }
    }
    for (const result of results.values()) await saveComparison(control, migration, result);
    if (live) {
      await recordLiveComparison(control, migration);
      const differing = [...results.values()].filter((r) => r.status === 'mismatch').map((r) => qualified(r.source));
      await recordEvent(
        control,
        migration,
        differing.length ? 'warn' : 'info',
        `live comparison: ${results.size - differing.length} table(s) match${differing.length ? `, ${differing.length} differ while changes flow (${differing.join(', ')}); the comparison after cutover decides` : ''}`,
      );
    }
  } finally {
    await Promise.all([control.end(), source.end()]);
  }

  /** Waits until the streamer has processed `lsn`; gives up at once if the streamer is silent (the workflow restarts it after this step). */
  async function caughtUpTo(lsn: string): Promise<void> {
    const deadline = Date.now() + CATCH_UP_WAIT_MS;
    while (Date.now() < deadline) {
      const status = await readReplicationStatus(control, migration);
      if (status?.processedLsn && parseLsn(status.processedLsn) >= parseLsn(lsn)) return;
      if ((status?.heartbeatAgeSeconds ?? Infinity) > spec.cdc.heartbeatTimeoutSeconds) {
        log('the streamer is not reporting; comparing without waiting for it');
        return;
      }
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
    log(`the target did not reach ${lsn} within ${CATCH_UP_WAIT_MS / 1000} s; comparing anyway`);
  }
});

function liveNote(result: TableComparison, round: number): string | undefined {
  if (result.status === 'match') return result.note;
  return `compared while changes flow, still different after ${round} recheck(s); the comparison after cutover decides${result.note ? `; ${result.note}` : ''}`;
}

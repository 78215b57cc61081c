/**
 * Compare and LiveCompare: compares every loaded table, source against target; results go to
 * the control schema. After a full load the source is read at the load's snapshot. With CDC the
 * final comparison runs after cutover has drained (source as it is now); the live one runs
 * while changes still flow and compares differing tables again once the target has applied
 * what the source had when they were read, so only lasting differences are reported.
 *
 * With CDC and cutover.finalCompare, the live comparison records from which LSN it verified each
 * table, and the applier records the keys it changes; LiveCompare at the cutover request and the
 * final comparison then compare only what changed since (compare-changes.ts).
 */
import type pg from 'pg';
import { copiedColumns, dataTables, listTables, tableOptions, type TableInfo } from '../catalog/tables.js';
import { parseLsn } from '../cdc/pgoutput.js';
import {
  readAppliedLsn,
  readReplicationStatus,
  recordIncrementalComparison,
  recordLiveComparison,
  recordVerification,
  saveComparison,
} from '../control/index.js';
import { compareTables, type CompareTarget, type TableComparison } from '../compare/index.js';
import { migrationState, recordEvent, setPhase } from '../control/index.js';
import { loadedTables } from '../control/index.js';
import { currentWalLsn } from '../cutover/index.js';
import type { MigrationSpec } from '../spec/index.js';
import { qualified, sleep } from '../sql.js';
import type { TaskStepContext } from './task.js';
import { isLargeObjects } from '../load/large-objects.js';
import { compareOtherObjects } from './compare-objects.js';
import { compareChanges, differencesInFlight, LIVE_MAX_DIFFERENCES, LIVE_RECHECKS, type CompareSummary } from './compare-changes.js';

export type { CompareSummary };
const CATCH_UP_WAIT_MS = 60_000;
const CATCH_UP_POLL_MS = 200;

/**
 * `live`: the comparison while replicating (LiveCompare), before cutover; the first one compares
 * every table, the one at the cutover request (CDC with cutover.finalCompare) only what changed
 * since. Returns what was read (undefined when comparison is disabled).
 */
export async function compareStep(context: TaskStepContext, { live }: { live: boolean }): Promise<CompareSummary | undefined> {
  const { migration, spec, connectSource, connectTarget, log } = context;
  if (!spec.compare.enabled) {
    log('comparison disabled by the spec');
    return undefined;
  }
  const control = await connectTarget();
  const source = await connectSource();
  try {
    if (!live) await setPhase(control, migration, 'compare');
    const snapshot = spec.mode === 'full' ? ((await migrationState(control, migration))?.snapshot ?? undefined) : undefined;
    const { tables, roots } = await tablesToCompare(spec, migration, source, control);
    // The applier records changed keys (replication.ts) when the final comparison will use them.
    const tracked = spec.mode !== 'full' && spec.cutover.finalCompare;
    // While changes flow, every difference must be listed for it to be known as a change in flight (differencesInFlight).
    const listAll = live && tracked;
    const compare = (subset: CompareTarget[]) =>
      compareTables(connectSource, connectTarget, subset, {
        method: spec.compare.method,
        chunkRows: spec.compare.chunkRows,
        maxDifferences: listAll ? LIVE_MAX_DIFFERENCES : spec.compare.maxDifferencesReported,
        ...(listAll ? { leafRows: spec.compare.chunkRows * 2 } : {}),
        parallelism: spec.fullLoad.parallelism,
        snapshot,
        onTable: (result) => log(`${qualified(result.source)}: ${result.status} (${result.sourceRows} rows)`),
      });
    const liveContext: LiveContext = { ...context, source, control };
    const incremental = tracked && (!live || (await readReplicationStatus(control, migration))?.liveCompared === true);
    const inFull = (subset: CompareTarget[]) => compareInFull(liveContext, subset, compare, { live, tracked });
    let results: Map<string, TableComparison>;
    let summary: CompareSummary;
    if (incremental) {
      const from = live ? await verificationPoint(liveContext) : undefined;
      const recheck = async () => verificationPoint(liveContext);
      ({ results, summary } = await compareChanges(liveContext, tables, roots, inFull, from ? { verifiedFrom: from, recheck } : undefined));
    } else {
      const full = await inFull(tables);
      results = new Map(full.results.map((r) => [qualified(r.source), r]));
      if (live && tracked) {
        for (const r of full.results) await recordVerification(control, migration, r.source, full.verifiedFrom.get(qualified(r.source))!, full.verified.has(qualified(r.source)));
      }
      summary = { tablesInFull: tables.length, tablesByKey: 0, rowsRechecked: 0, tablesNotRead: 0 };
    }
    for (const result of results.values()) await saveComparison(control, migration, listedAtMost(result, spec.compare.maxDifferencesReported));
    if (!live) await compareOtherObjects(context, control, snapshot);
    if (live) await recordLiveOutcome(control, migration, results, incremental);
    if (incremental) {
      log(
        `${live ? 'live comparison at the cutover request' : 'final comparison'}: ${summary.tablesInFull} table(s) in full, ` +
          `${summary.rowsRechecked} changed row(s) of ${summary.tablesByKey} table(s) by key, ${summary.tablesNotRead} unchanged table(s) not read`,
      );
    }
    return summary;
  } finally {
    await Promise.all([control.end(), source.end()]);
  }
}

/**
 * Compares `tables` in full; live, compares differing ones again once caught up. `tracked`
 * (live): from which LSN each was verified, and whether it counts as verified.
 */
async function compareInFull(
  context: LiveContext,
  tables: CompareTarget[],
  compare: (subset: CompareTarget[]) => Promise<TableComparison[]>,
  { live, tracked }: { live: boolean; tracked: boolean },
): Promise<{ results: TableComparison[]; verifiedFrom: Map<string, string>; verified: Set<string> }> {
  const verifiedFrom = new Map<string, string>();
  const from = live && tracked ? await verificationPoint(context) : undefined;
  const results = new Map((await compare(tables)).map((r) => [qualified(r.source), r]));
  if (from) for (const name of results.keys()) verifiedFrom.set(name, from);
  const verified = new Set([...results.values()].filter((r) => r.status === 'match').map((r) => qualified(r.source)));
  // Under a steady write load hot tables differ at every look: rows that differ only because
  // they changed while compared are recorded as changed (once the target caught up), and
  // compared again later. Only the other differences are worth a recheck.
  const inFlight = async () => {
    await verificationPoint(context);
    for (const table of tables) {
      const name = qualified(table.source);
      const result = results.get(name)!;
      if (!verified.has(name) && result.status === 'mismatch' && (await differencesInFlight(context, table, table.primaryKey, result, verifiedFrom.get(name)!))) verified.add(name);
    }
  };
  if (from && verified.size < results.size) await inFlight();
  if (live) {
    const unexplained = tables.filter((t) => !verified.has(qualified(t.source)));
    await recheckWhileLive(context, unexplained, results, compare, from ? verifiedFrom : undefined);
    for (const t of unexplained) if (results.get(qualified(t.source))?.status === 'match') verified.add(qualified(t.source));
    if (from && verified.size < results.size) await inFlight();
  }
  return { results: [...results.values()], verifiedFrom, verified };
}

/**
 * The tables the load planned (with its columns and filters); in mode cdc, which plans none, every
 * selected table under its own name. `roots`: each partition's partitioned table (by name).
 */
async function tablesToCompare(
  spec: MigrationSpec,
  migration: string,
  source: pg.Client,
  control: pg.Client,
): Promise<{ tables: CompareTarget[]; roots: Map<string, string> }> {
  const sourceTables = await listTables(source, spec.objects);
  const primaryKeys = new Map(sourceTables.map((t) => [qualified(t), t.primaryKey]));
  const loaded = (await loadedTables(control, migration)).filter((planned) => !isLargeObjects(planned.source));
  const tables: CompareTarget[] = loaded.map((planned) => ({
    source: planned.source,
    target: planned.target,
    columns: planned.columns,
    primaryKey: primaryKeys.get(qualified(planned.source)) ?? null,
    where: planned.where ?? undefined,
  }));
  if (spec.mode === 'cdc') tables.push(...dataTables(sourceTables).map((table) => selectedTable(spec, table)));
  const roots = new Map(sourceTables.flatMap((t) => (t.root ? [[qualified(t), qualified(t.root)] as const] : [])));
  return { tables, roots };
}

const selectedTable = (spec: MigrationSpec, table: TableInfo): CompareTarget => {
  const ref = { schema: table.schema, name: table.name };
  return { source: ref, target: ref, columns: copiedColumns(table, tableOptions(spec.objects, table)), primaryKey: table.primaryKey };
};

type LiveContext = TaskStepContext & { source: pg.Client; control: pg.Client };

/**
 * Differences may be changes in flight: waits until the target holds what the source has now,
 * then compares the differing tables again. `verifiedFrom` gets the LSN each recheck was
 * verified from.
 */
async function recheckWhileLive(
  context: LiveContext,
  tables: CompareTarget[],
  results: Map<string, TableComparison>,
  compare: (subset: CompareTarget[]) => Promise<TableComparison[]>,
  verifiedFrom: Map<string, string> | undefined,
): Promise<void> {
  for (let round = 1; round <= LIVE_RECHECKS; round++) {
    const differing = tables.filter((t) => results.get(qualified(t.source))?.status === 'mismatch');
    if (differing.length === 0) break;
    const from = await verificationPoint(context);
    for (const result of await compare(differing)) {
      results.set(qualified(result.source), { ...result, note: liveNote(result, round) });
      verifiedFrom?.set(qualified(result.source), from);
    }
  }
}

/**
 * Waits until the target holds what the source has now, then reads the target's applied LSN:
 * every change committed on the source below it is committed on the target, so a comparison
 * that starts reading afterwards sees it (control/changed-keys.ts).
 */
async function verificationPoint(context: LiveContext): Promise<string> {
  await caughtUpTo(context, await currentWalLsn(context.source));
  return (await readAppliedLsn(context.control, context.migration)) ?? '0/0';
}

/** Waits until the streamer has processed `lsn`; gives up at once if the streamer is silent (the workflow restarts it after this step). */
async function caughtUpTo({ migration, spec, control, log }: LiveContext, lsn: string): Promise<void> {
  const deadline = Date.now() + CATCH_UP_WAIT_MS;
  while (Date.now() < deadline) {
    const status = await readReplicationStatus(control, migration);
    if (status?.processedLsn && parseLsn(status.processedLsn) >= parseLsn(lsn)) return;
    if ((status?.heartbeatAgeSeconds ?? Infinity) > spec.cdc.heartbeatTimeoutSeconds) {
      log('the streamer is not reporting; comparing without waiting for it');
      return;
    }
    await sleep(CATCH_UP_POLL_MS);
  }
  log(`the target did not reach ${lsn} within ${CATCH_UP_WAIT_MS / 1000} s; comparing anyway`);
}

function liveNote(result: TableComparison, round: number): string | undefined {
  if (result.status === 'match') return result.note;
  return `compared while changes flow, still different after ${round} recheck(s); the comparison after cutover decides${result.note ? `; ${result.note}` : ''}`;
}

async function recordLiveOutcome(control: pg.Client, migration: string, results: Map<string, TableComparison>, incremental: boolean): Promise<void> {
  if (incremental) await recordIncrementalComparison(control, migration);
  else await recordLiveComparison(control, migration);
  const differing = [...results.values()].filter((r) => r.status === 'mismatch').map((r) => qualified(r.source));
  await recordEvent(
    control,
    migration,
    differing.length ? 'warn' : 'info',
    `${incremental ? 'live comparison of the changes at the cutover request' : 'live comparison'}: ${results.size - differing.length} table(s) match${differing.length ? `, ${differing.length} differ while changes flow (${differing.join(', ')}); the comparison after cutover decides` : ''}`,
  );
}

/** The comparison as saved: at most `most` differences listed (a live one lists them all, to tell changes in flight). */
function listedAtMost(result: TableComparison, most: number): TableComparison {
  if (result.differences.length <= most) return result;
  return { ...result, differences: result.differences.slice(0, most), note: [result.note, `only the first ${most} differences are listed`].filter(Boolean).join('; ') };
}

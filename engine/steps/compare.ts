/**
 * Compare and LiveCompare: compares every loaded table, source against target; results go to
 * the control schema. After a full load the source is read at the load's snapshot. With CDC the
 * final comparison runs after cutover has drained (source as it is now); the live one runs
 * while changes still flow.
 *
 * With CDC and cutover.finalCompare the applier records the keys it changes, and the live
 * comparison reads each table in a consistent pair of snapshots (consistent-pair.ts): rows that
 * changed between them are left for later, every other difference is lasting, and the table is
 * verified from the pair's LSN. LiveCompare at the cutover request and the final comparison then
 * compare only what changed since (compare-changes.ts). Without it, differing tables are compared
 * again once the target has applied what the source had, so only lasting differences are reported.
 */
import type pg from 'pg';
import { copiedColumns, dataTables, listTables, tableOptions, type TableInfo } from '../catalog/tables.js';
import { parseLsn } from '../cdc/pgoutput.js';
import {
  countChangedKeys,
  readReplicationStatus,
  recordIncrementalComparison,
  recordLiveComparison,
  recordVerification,
  saveComparison,
  vacuumChangedKeys,
} from '../control/index.js';
import { compareTables, type CompareTarget, type PairSnapshots, type TableComparison } from '../compare/index.js';
import { migrationState, recordEvent, setPhase } from '../control/index.js';
import { loadedTables, namesMapped } from '../control/index.js';
import { mappedColumns, namesNow, type NameMap } from '../schema/mapping.js';
import { applyNameMapping } from '../schema/apply-mapping.js';
import { currentWalLsn } from '../cutover/index.js';
import type { MigrationSpec } from '../spec/index.js';
import { qualified, sleep } from '../sql.js';
import type { TaskStepContext } from './task.js';
import { isLargeObjects } from '../load/large-objects.js';
import { compareOtherObjects } from './compare-objects.js';
import { compareChanges, type ByKeySeconds, type CompareInFull, type CompareSummary } from './compare-changes.js';
import { SnapshotPairs } from './consistent-pair.js';

export type { CompareSummary };
/** Rechecks of tables that differed while changes were flowing, when the applier records no changed keys. */
const LIVE_RECHECKS = 3;
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
  const started = Date.now();
  const control = await connectTarget();
  const source = await connectSource();
  try {
    if (!live) {
      // Mode full reaches here straight from post-data: the objects get their mapped names first.
      await applyNameMapping(control, spec);
      await setPhase(control, migration, 'compare');
    }
    const snapshot = spec.mode === 'full' ? ((await migrationState(control, migration))?.snapshot ?? undefined) : undefined;
    const { tables, roots } = await tablesToCompare(spec, migration, source, control);
    // The applier records changed keys (replication.ts) when the final comparison will use them.
    const tracked = spec.mode !== 'full' && spec.cutover.finalCompare;
    const compare = (subset: CompareTarget[], pair?: PairSnapshots) =>
      compareTables(connectSource, connectTarget, subset, {
        method: spec.compare.method,
        chunkRows: spec.compare.chunkRows,
        maxDifferences: spec.compare.maxDifferencesReported,
        parallelism: spec.fullLoad.parallelism,
        snapshot,
        ...(pair ? { pair } : {}),
        onTable: (result) => log(`${qualified(result.source)}: ${result.status} (${result.sourceRows} rows)`),
      });
    const liveContext: LiveContext = { ...context, source, control };
    const incremental = tracked && (!live || (await readReplicationStatus(control, migration))?.liveCompared === true);
    const inFull = (subset: CompareTarget[]) => compareInFull(liveContext, subset, compare, { live, tracked });
    let results: Map<string, TableComparison>;
    let summary: CompareSummary;
    let took = '';
    if (incremental && live) {
      ({ results, summary } = await comparePassesWhileLive(liveContext, tables, roots, inFull));
    } else if (incremental) {
      let seconds: { inFull: number; byKey: number; keysRead: number; tables: ByKeySeconds[] };
      ({ results, summary, seconds } = await compareChanges(liveContext, tables, roots, inFull, undefined));
      const slowest = [...seconds.tables].sort((a, b) => b.seconds - a.seconds).slice(0, 3);
      const tablesTook = slowest.map((t) => `${t.name} ${t.keys.toLocaleString('en-US')} in ${t.seconds.toFixed(2)} s`).join(', ');
      took = ` (in full ${seconds.inFull.toFixed(2)} s, by key ${seconds.byKey.toFixed(2)} s: reading the keys ${seconds.keysRead.toFixed(2)} s${tablesTook ? `, ${tablesTook}` : ''}; at once)`;
    } else {
      const full = await inFull(tables);
      results = new Map(full.results.map((r) => [qualified(r.source), r]));
      if (live && tracked) {
        for (const r of full.results) await recordVerification(control, migration, r.source, full.verifiedFrom.get(qualified(r.source))!, full.verified.has(qualified(r.source)));
      }
      summary = { tablesInFull: tables.length, tablesByKey: 0, rowsRechecked: 0, tablesNotRead: 0, tablesLeftForFence: 0 };
    }
    for (const result of results.values()) await saveComparison(control, migration, listedAtMost(result, spec.compare.maxDifferencesReported));
    if (!live) await compareOtherObjects(context, control, snapshot);
    if (live) await recordLiveOutcome(control, migration, results, incremental ? (Date.now() - started) / 1000 : undefined);
    if (incremental) {
      log(
        `${live ? 'live comparison at the cutover request' : 'final comparison'}: ${summary.tablesInFull} table(s) in full, ` +
          `${summary.rowsRechecked} changed row(s) of ${summary.tablesByKey} table(s) by key, ${summary.tablesNotRead} unchanged table(s) not read${took}`,
      );
    }
    return summary;
  } finally {
    await Promise.all([control.end(), source.end()]);
  }
}

/** The incremental comparison at the cutover request stops once at most this many changed keys are left for the one behind the fence. */
const FEW_KEYS_LEFT = 2_000;
/** … or after this many passes, or when a pass leaves more than this share of what the one before it left (the writes outpace it). */
const MAX_PASSES = 5;
const SHRINK_AT_LEAST = 0.75;

/**
 * The comparison at the cutover request, before the fence: what changed since the tables were
 * verified, again and again while each pass leaves fewer changed keys (the changes made during a
 * pass are the next pass's work), so the comparison behind the fence has little left to read.
 */
async function comparePassesWhileLive(
  context: LiveContext,
  tables: CompareTarget[],
  roots: Map<string, string>,
  inFull: CompareInFull,
): Promise<{ results: Map<string, TableComparison>; summary: CompareSummary }> {
  const { control, migration, log } = context;
  const results = new Map<string, TableComparison>();
  let summary: CompareSummary | undefined;
  let left = Infinity;
  for (let pass = 1; pass <= MAX_PASSES; pass++) {
    // Tables compared in full by the first pass and changed again without a usable key cannot be verified while changes flow: the comparison behind the fence reads them.
    const started = Date.now();
    const one = await compareChanges(context, tables, roots, pass === 1 ? inFull : undefined, new SnapshotPairs(context));
    for (const [name, result] of one.results) results.set(name, result);
    summary = summary ? addSummaries(summary, one.summary) : one.summary;
    const before = left;
    await vacuumChangedKeys(control);
    left = await countChangedKeys(control, migration);
    const line =
      `comparison pass ${pass} at the cutover request: ${one.summary.rowsRechecked.toLocaleString('en-US')} changed row(s) by key` +
      `${one.summary.tablesInFull ? ` and ${one.summary.tablesInFull} table(s) in full` : ''}` +
      `${one.summary.tablesLeftForFence ? ` (${one.summary.tablesLeftForFence} table(s) without a usable key still being written: compared behind the fence)` : ''}` +
      ` in ${((Date.now() - started) / 1000).toFixed(1)} s; ` +
      `${left.toLocaleString('en-US')} changed since`;
    log(line);
    await recordEvent(control, migration, 'info', line);
    if (left <= FEW_KEYS_LEFT || left > before * SHRINK_AT_LEAST) break;
  }
  return { results, summary: summary! };
}

const addSummaries = (a: CompareSummary, b: CompareSummary): CompareSummary => ({
  tablesInFull: a.tablesInFull + b.tablesInFull,
  tablesByKey: a.tablesByKey + b.tablesByKey,
  rowsRechecked: a.rowsRechecked + b.rowsRechecked,
  tablesNotRead: Math.min(a.tablesNotRead, b.tablesNotRead),
  tablesLeftForFence: a.tablesLeftForFence + b.tablesLeftForFence,
});

/**
 * Compares `tables` in full. Live and tracked: each in a consistent pair of snapshots
 * (consistent-pair.ts), verified from the pair's LSN when it matches. Live without tracking
 * (the applier records no keys): differing tables are compared again once the target caught up.
 */
async function compareInFull(
  context: LiveContext,
  tables: CompareTarget[],
  compare: (subset: CompareTarget[], pair?: PairSnapshots) => Promise<TableComparison[]>,
  { live, tracked }: { live: boolean; tracked: boolean },
): Promise<{ results: TableComparison[]; verifiedFrom: Map<string, string>; verified: Set<string> }> {
  const verifiedFrom = new Map<string, string>();
  const pairs = live && tracked ? new SnapshotPairs(context) : undefined;
  const results = new Map((await compare(tables, pairs?.forTables)).map((r) => [qualified(r.source), r]));
  const verified = new Set([...results.values()].filter((r) => r.status === 'match').map((r) => qualified(r.source)));
  if (pairs) {
    for (const [name, pair] of pairs.pairs) {
      verifiedFrom.set(name, pair.from);
      const result = results.get(name);
      // Changed as a whole while compared: its difference says nothing, and the table stays due as a whole (the comparison after cutover reads it in full).
      if (pair.wholeSince && result?.status === 'mismatch') {
        verified.add(name);
        results.set(name, { ...result, note: 'changed without a usable key while compared; the comparison after cutover compares it in full' });
      }
    }
  } else if (live) {
    await recheckWhileLive(context, tables, results, compare);
    for (const r of results.values()) if (r.status === 'match') verified.add(qualified(r.source));
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
  const names = namesNow(spec, await namesMapped(control, migration), sourceTables);
  return { tables: names.identity ? tables : tables.map((table) => mappedTarget(names, table)), roots };
}

/** `table` with the target's names of the table and its columns (schema/mapping.ts). */
export const mappedTarget = (names: NameMap, table: CompareTarget): CompareTarget => ({
  ...table,
  target: names.table(table.source),
  targetColumns: mappedColumns(names, table.source, table.columns),
});

const selectedTable = (spec: MigrationSpec, table: TableInfo): CompareTarget => {
  const ref = { schema: table.schema, name: table.name };
  // A partition follows its partitioned table's options, as in the load (planner.ts).
  const options = tableOptions(spec.objects, table.root ?? table);
  return { source: ref, target: ref, columns: copiedColumns(table, options), primaryKey: table.primaryKey, ...(options.where ? { where: options.where } : {}) };
};

type LiveContext = TaskStepContext & { source: pg.Client; control: pg.Client };

/**
 * Differences may be changes in flight: waits until the target holds what the source has now,
 * then compares the differing tables again.
 */
async function recheckWhileLive(
  context: LiveContext,
  tables: CompareTarget[],
  results: Map<string, TableComparison>,
  compare: (subset: CompareTarget[]) => Promise<TableComparison[]>,
): Promise<void> {
  for (let round = 1; round <= LIVE_RECHECKS; round++) {
    const differing = tables.filter((t) => results.get(qualified(t.source))?.status === 'mismatch');
    if (differing.length === 0) break;
    await caughtUpTo(context, await currentWalLsn(context.source));
    for (const result of await compare(differing)) results.set(qualified(result.source), { ...result, note: liveNote(result, round) });
  }
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

/** `incrementalSeconds`: how long the passes at the cutover request took; undefined for the live comparison of every table. */
async function recordLiveOutcome(control: pg.Client, migration: string, results: Map<string, TableComparison>, incrementalSeconds: number | undefined): Promise<void> {
  const incremental = incrementalSeconds !== undefined;
  if (incremental) await recordIncrementalComparison(control, migration, incrementalSeconds);
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

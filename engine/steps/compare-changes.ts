/**
 * The incremental comparison (issue 14): once the comparison while replicating has verified a
 * table from some LSN, only what the applier changed since needs another look. Used by
 * LiveCompare once more at the cutover request (before the fence) and by the final comparison
 * behind the fence, so the fenced window depends on the changes, not on the size:
 *   - changed keys of a verified table: those rows, fetched by key on both sides;
 *   - tables changed without a usable key (REPLICA IDENTITY FULL, none, TRUNCATE), never
 *     verified, or that differed while replicating: compared in full;
 *   - verified tables without changes: not read again.
 */
import type pg from 'pg';
import { compareRowsByKey } from '../compare/changed-rows.js';
import { withComparedSides, type CompareTarget, type TableComparison } from '../compare/index.js';
import {
  changedSince,
  loadComparisons,
  readChangedKeys,
  readTableChanges,
  readVerifications,
  recordVerification,
  type TableChanges,
  type TableVerification,
} from '../control/index.js';
import { qualified } from '../sql.js';
import type { TaskStepContext } from './task.js';

/** What a comparison read, for its caller and tests. */
export interface CompareSummary {
  /** Tables compared in full (checksums of every row). */
  tablesInFull: number;
  /** Tables of which only the changed rows were compared, and how many rows (keys) that was. */
  tablesByKey: number;
  rowsRechecked: number;
  /** Tables verified while replicating and unchanged since: not read. */
  tablesNotRead: number;
}

export type ChangesContext = TaskStepContext & { source: pg.Client; control: pg.Client };

/**
 * Full comparisons of `tables` (with the live rechecks); live, the LSN from which each was
 * verified and which of them count as verified (matched, or differing only in rows changed since).
 */
export type CompareInFull = (
  tables: CompareTarget[],
) => Promise<{ results: TableComparison[]; verifiedFrom: Map<string, string>; verified: Set<string> }>;

interface ByKey {
  table: CompareTarget;
  keyColumns: string[];
  keys: (string | null)[][];
  verification: TableVerification;
}

/**
 * Compares what changed since each table was verified. `roots` maps a partition to its
 * partitioned table, under whose name pgoutput sends its changes: a partition whose root
 * changed is compared in full. `live`: changes still flow; `verifiedFrom` is the target's
 * applied LSN read after it caught up, before anything was read, and differing rows are looked
 * at again once the target caught up (`recheck`). Returns the comparisons to save.
 */
export async function compareChanges(
  context: ChangesContext,
  tables: CompareTarget[],
  roots: Map<string, string>,
  compareInFull: CompareInFull,
  live: { verifiedFrom: string; recheck: (round: number) => Promise<string> } | undefined,
): Promise<{ results: Map<string, TableComparison>; summary: CompareSummary }> {
  const { migration, spec, control } = context;
  const changes = await readTableChanges(control, migration);
  const verifications = await readVerifications(control, migration);
  const previous = new Map((await loadComparisons(control, migration)).map((c) => [qualified(c.source), c]));
  const inFull: { table: CompareTarget; reason: string }[] = [];
  const byKey: ByKey[] = [];
  const notRead: { table: CompareTarget; verification: TableVerification }[] = [];
  for (const table of tables) {
    const name = qualified(table.source);
    const verification = verifications.get(name);
    const changed = changes.get(name);
    const root = roots.get(name);
    const reason = fullReason(verification, changed, root ? changes.get(root) : undefined);
    if (reason) inFull.push({ table, reason });
    else if (changed?.keys) byKey.push({ table, keyColumns: changed.keyColumns!, keys: await readChangedKeys(control, migration, table.source), verification: verification! });
    else if (!previous.has(name)) inFull.push({ table, reason: 'no earlier result was saved' });
    else notRead.push({ table, verification: verification! });
  }

  const results = new Map<string, TableComparison>();
  if (inFull.length > 0) {
    const full = await compareInFull(inFull.map((t) => t.table));
    const reasons = new Map(inFull.map((t) => [qualified(t.table.source), t.reason]));
    for (const result of full.results) {
      const name = qualified(result.source);
      results.set(name, { ...result, note: joinNotes(`compared in full: ${reasons.get(name)}`, result.note) });
      if (live) await recordVerification(control, migration, result.source, full.verifiedFrom.get(name) ?? live.verifiedFrom, full.verified.has(name));
    }
  }

  const options = { method: spec.compare.method, maxDifferences: live ? LIVE_MAX_DIFFERENCES : spec.compare.maxDifferencesReported };
  const checkKeys = async (entries: ByKey[]): Promise<TableComparison[]> => {
    if (entries.length === 0) return [];
    return withComparedSides(context.connectSource, context.connectTarget, undefined, async (source, target) => {
      const checked: TableComparison[] = [];
      for (const entry of entries) checked.push(await compareRowsByKey(source, target, entry.table, entry.keyColumns, entry.keys, options));
      return checked;
    });
  };
  let checked = await checkKeys(byKey);
  for (let round = 1; live && round <= LIVE_RECHECKS; round++) {
    const differing = byKey.filter((_, i) => checked[i]!.status === 'mismatch');
    if (differing.length === 0) break;
    await live.recheck(round);
    const again = new Map((await checkKeys(differing)).map((r) => [qualified(r.source), r]));
    checked = checked.map((r) => again.get(qualified(r.source)) ?? r);
  }
  if (live && checked.some((r) => r.status === 'mismatch')) await live.recheck(0); // catch up: changes in flight get recorded
  for (const [i, entry] of byKey.entries()) {
    const result = checked[i]!;
    const name = qualified(entry.table.source);
    const what = `rechecked ${entry.keys.length.toLocaleString('en-US')} changed row(s) by key; verified while replicating from LSN ${entry.verification.lsn}`;
    let verified = result.status === 'match';
    let lasting: string | undefined;
    if (live && !verified) {
      verified = await differencesInFlight(context, entry.table, entry.keyColumns, result, live.verifiedFrom);
      lasting = verified
        ? 'the differing rows changed again while compared; the comparison after cutover rechecks them'
        : 'still different after the rechecks while changes flow; the comparison after cutover compares the table in full';
    }
    results.set(name, { ...result, note: joinNotes(what, lasting, result.note) });
    if (live) await recordVerification(control, migration, entry.table.source, live.verifiedFrom, verified);
  }

  if (!live) {
    for (const { table, verification } of notRead) {
      const earlier = previous.get(qualified(table.source))!;
      results.set(qualified(table.source), { ...earlier, note: `verified while replicating from LSN ${verification.lsn}; not changed since, not read again` });
    }
  }
  return {
    results,
    summary: {
      tablesInFull: inFull.length,
      tablesByKey: byKey.length,
      rowsRechecked: byKey.reduce((sum, entry) => sum + entry.keys.length, 0),
      tablesNotRead: notRead.length,
    },
  };
}

/**
 * Whether a live comparison's differences are all rows recorded as changed since `from` (the LSN
 * it was verified from), the target having caught up since: changes in flight, which stay due for
 * the next comparison. Not when the differences were not all listed, or name no rows.
 */
export async function differencesInFlight(
  context: ChangesContext,
  table: CompareTarget,
  keyColumns: string[] | null,
  result: TableComparison,
  from: string,
): Promise<boolean> {
  const complete = result.differences.length > 0 && result.differences.length < LIVE_MAX_DIFFERENCES;
  const keys = complete && keyColumns ? result.differences.map((d) => keyColumns.map((c) => d.key[c] ?? null)) : [];
  return changedSince(context.control, context.migration, table.source, keyColumns, keys, from);
}

/** Rechecks of rows or tables that differed while changes were flowing. */
export const LIVE_RECHECKS = 3;

/** A comparison while changes flow lists this many differences at most (to tell changes in flight from lasting ones); the saved result keeps compare.maxDifferencesReported. */
export const LIVE_MAX_DIFFERENCES = 1_000_000;

/** Why a table is compared in full rather than by its changed keys; undefined when its changed keys suffice. */
function fullReason(verification: TableVerification | undefined, changed: TableChanges | undefined, rootChanged: TableChanges | undefined): string | undefined {
  if (!verification) return 'not verified while replicating';
  if (!verification.matched) return 'it differed while replicating';
  if (changed?.wholeLsn) return 'changed without a usable key (REPLICA IDENTITY FULL or no key, or truncated)';
  if (changed?.keys && !changed.keyColumns) return 'its changed keys name no key columns';
  if (rootChanged && (rootChanged.keys > 0 || rootChanged.wholeLsn)) return 'a partition: its changes are recorded under its partitioned table';
  return undefined;
}

const joinNotes = (...notes: (string | undefined)[]) => notes.filter(Boolean).join('; ') || undefined;

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
import { settleAll } from '../connect/index.js';
import { withComparedSides, type CompareTarget, type TableComparison } from '../compare/index.js';
import {
  loadComparisons,
  readChangedKeys,
  readTableChanges,
  readWholeChanges,
  readVerifications,
  recordVerification,
  type TableChanges,
  type TableVerification,
} from '../control/index.js';
import { qualified } from '../sql.js';
import type { SnapshotPairs } from './consistent-pair.js';
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
  /** At the cutover request: tables changed without a usable key again while the pass compared by key, left for the comparison behind the fence. */
  tablesLeftForFence: number;
}

export type ChangesContext = TaskStepContext & { source: pg.Client; control: pg.Client };

/** Full comparisons of `tables`; live, the LSN from which each was verified and which of them matched. */
export type CompareInFull = (
  tables: CompareTarget[],
) => Promise<{ results: TableComparison[]; verifiedFrom: Map<string, string>; verified: Set<string> }>;

/** How long one table's changed rows took to compare by key. */
export interface ByKeySeconds {
  name: string;
  keys: number;
  seconds: number;
}

interface ByKey {
  table: CompareTarget;
  keyColumns: string[];
  verification: TableVerification;
}

/**
 * Compares what changed since each table was verified. `roots` maps a partition to its
 * partitioned table, under whose name pgoutput sends its changes: a partition whose root
 * changed is compared in full. `pairs`: changes still flow, and each table is read in a
 * consistent pair of snapshots (consistent-pair.ts): the keys changed before the pair are
 * checked, those changed during it stay due. Without `compareInFull` (a later pass at the
 * cutover request), tables that need a full comparison are left to the next comparison.
 * Returns the comparisons to save.
 */
export async function compareChanges(
  context: ChangesContext,
  tables: CompareTarget[],
  roots: Map<string, string>,
  compareInFull: CompareInFull | undefined,
  pairs: SnapshotPairs | undefined,
): Promise<{ results: Map<string, TableComparison>; summary: CompareSummary; seconds: { inFull: number; byKey: number; keysRead: number; tables: ByKeySeconds[] } }> {
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
    else if (changed?.keys) byKey.push({ table, keyColumns: changed.keyColumns!, verification: verification! });
    else if (!previous.has(name)) inFull.push({ table, reason: 'no earlier result was saved' });
    else notRead.push({ table, verification: verification! });
  }

  const results = new Map<string, TableComparison>();
  if (!compareInFull) inFull.length = 0;
  const seconds = { inFull: 0, byKey: 0, keysRead: 0, tables: [] as ByKeySeconds[] };
  const timed = async (part: 'inFull' | 'byKey', work: () => Promise<void>) => {
    const started = Date.now();
    await work();
    seconds[part] = (Date.now() - started) / 1000;
  };

  const compareWhole = async () => {
    if (!compareInFull || inFull.length === 0) return;
    const full = await compareInFull(inFull.map((t) => t.table));
    const reasons = new Map(inFull.map((t) => [qualified(t.table.source), t.reason]));
    for (const result of full.results) {
      const name = qualified(result.source);
      results.set(name, { ...result, note: joinNotes(`compared in full: ${reasons.get(name)}`, result.note) });
      const from = full.verifiedFrom.get(name);
      if (pairs && from) await recordVerification(control, migration, result.source, from, full.verified.has(name));
    }
  };

  const options = { method: spec.compare.method, maxDifferences: spec.compare.maxDifferencesReported };
  let rowsRechecked = 0;
  let writtenWhileCompared = 0;
  const compareKeys = async () => {
    if (byKey.length === 0) return;
    // Behind the fence the keys are read first: the control session is then free for the comparison in full beside this one.
    const keysOf = new Map<string, (string | null)[][]>();
    const keysStarted = Date.now();
    if (!pairs) for (const entry of byKey) keysOf.set(qualified(entry.table.source), await readChangedKeys(control, migration, entry.table.source));
    seconds.keysRead = (Date.now() - keysStarted) / 1000;
    await withComparedSides(context.connectSource, context.connectTarget, undefined, async (source, target) => {
      for (const entry of byKey) {
        const name = qualified(entry.table.source);
        const pair = pairs ? await pairs.open(source, target, entry.table.source, entry.keyColumns, { due: true }) : undefined;
        const keys = pair ? pair.due : keysOf.get(name)!;
        const started = Date.now();
        const result = await compareRowsByKey(source, target, entry.table, entry.keyColumns, keys, options);
        const took = (Date.now() - started) / 1000;
        seconds.tables.push({ name, keys: keys.length, seconds: took });
        rowsRechecked += keys.length;
        const what = `rechecked ${keys.length.toLocaleString('en-US')} changed row(s) by key in ${took.toFixed(2)} s; verified while replicating from LSN ${pair?.from ?? entry.verification.lsn}`;
        const inFlight = pair?.inFlight?.length ? `${pair.inFlight.length.toLocaleString('en-US')} row(s) changed while compared: left for the next comparison` : undefined;
        const lasting = pair && result.status === 'mismatch' ? 'different while changes flow; the comparison after cutover compares the table in full' : undefined;
        results.set(name, { ...result, note: joinNotes(what, inFlight, lasting, result.note) });
        if (pair) await recordVerification(control, migration, entry.table.source, pair.from, result.status === 'match');
      }
    }, { paired: pairs !== undefined });
  };

  if (pairs) {
    // While changes flow both parts record verifications on the one control session: one after the
    // other, by key first. A table changed without a usable key again meanwhile is being written
    // on (an audit log, a history): it would be changed again before the fence, so reading it in
    // full now would only slow the applier down; the comparison behind the fence reads it.
    await timed('byKey', compareKeys);
    if (inFull.length > 0) {
      const wholeNow = await readWholeChanges(control, migration);
      const stillWritten = (name: string) => wholeNow.has(name) && wholeNow.get(name) !== changes.get(name)?.wholeLsn;
      const left = inFull.filter(({ table }) => !stillWritten(qualified(table.source)));
      writtenWhileCompared = inFull.length - left.length;
      inFull.splice(0, inFull.length, ...left);
    }
    await timed('inFull', compareWhole);
  } else {
    // Behind the fence every second counts: both at once, on sessions of their own.
    await settleAll([timed('inFull', compareWhole), timed('byKey', compareKeys)]);
  }

  if (!pairs) {
    for (const { table, verification } of notRead) {
      const earlier = previous.get(qualified(table.source))!;
      results.set(qualified(table.source), { ...earlier, note: `verified while replicating from LSN ${verification.lsn}; not changed since, not read again` });
    }
  }
  return {
    results,
    summary: { tablesInFull: inFull.length, tablesByKey: byKey.length, rowsRechecked, tablesNotRead: notRead.length, tablesLeftForFence: writtenWhileCompared },
    seconds,
  };
}

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

/**
 * Set-wise collapse: a table's buffered changes reduced to what the target must end up with,
 * or undefined when that cannot be done exactly (the caller then applies row by row). Pure.
 *
 * - Tables with a key: per key, the final state (absent / full row / patch of known columns on
 *   top of the target's row) and whether the key existed before the chunk. Planned as one
 *   DELETE, one UPDATE per set of known columns (unchanged-TOAST columns left out) and one
 *   insert of new rows.
 * - REPLICA IDENTITY FULL: a multiset of rows (an UPDATE = one old row out, the new row in;
 *   pairs inside the chunk cancel), planned as removals grouped by NULL pattern and additions.
 */
import { keyValues, type Change, type Relation } from './relation.js';
import { fill, hasToast, identity, TOAST, type Row } from './values.js';

export interface KeyEntry {
  /** Key values (aligned with Relation.key). */
  key: (string | null)[];
  existed: boolean;
  /** Final row (full width, may hold TOAST markers = patch), or undefined = absent. */
  values: Row | undefined;
}

/**
 * Collapses a table's changes per key, in stream order; undefined when that cannot be done
 * exactly: an INSERT over a key the chunk already holds, an UPDATE or DELETE of a key the chunk
 * already deleted, a key moving onto a key the chunk holds, or a key-changing UPDATE whose
 * unchanged-TOAST value lives only in the target's old row. Those go row by row, which reports
 * or resolves them as conflicts.
 */
export function collapseKeyed(rel: Relation, changes: Change[]): Map<string, KeyEntry> | undefined {
  const entries = new Map<string, KeyEntry>();
  for (const ch of changes) {
    if (ch.op === 'I') {
      const key = keyValues(rel, ch.new!);
      const id = identity(key);
      const e = entries.get(id);
      if (!e) entries.set(id, { key, existed: false, values: ch.new! });
      else if (e.values === undefined) e.values = ch.new!;
      else return undefined; // insert over a row the chunk holds: let the row-by-row path report it
    } else if (ch.op === 'U') {
      if (!collapseUpdate(rel, entries, ch)) return undefined;
    } else {
      const key = keyValues(rel, ch.old!);
      const id = identity(key);
      const e = entries.get(id);
      if (!e) entries.set(id, { key, existed: true, values: undefined });
      else if (e.values === undefined) return undefined;
      else e.values = undefined;
    }
  }
  return entries;
}

/** One UPDATE into `entries`; false when it cannot be collapsed exactly. */
function collapseUpdate(rel: Relation, entries: Map<string, KeyEntry>, ch: Change): boolean {
  const newKey = keyValues(rel, ch.new!, ch.old);
  const oldKey = ch.old ? keyValues(rel, ch.old) : newKey;
  const oldId = identity(oldKey);
  const newId = identity(newKey);
  const e = entries.get(oldId);
  if (oldId === newId) {
    if (!e) entries.set(oldId, { key: oldKey, existed: true, values: ch.new! });
    else if (e.values === undefined) return false;
    else e.values = fill(ch.new!, e.values);
    return true;
  }
  let base: Row | undefined;
  if (!e) entries.set(oldId, { key: oldKey, existed: true, values: undefined });
  else if (e.values === undefined) return false;
  else {
    base = e.values;
    e.values = undefined;
  }
  let values = ch.new!;
  if (hasToast(values)) {
    // The unchanged value lives in the old row: known only if the chunk holds it.
    if (!base) return false;
    values = fill(values, base);
    if (hasToast(values)) return false;
  }
  const n = entries.get(newId);
  if (!n) entries.set(newId, { key: newKey, existed: false, values });
  else if (n.values === undefined) n.values = values;
  else return false;
  return true;
}

export interface KeyedPlan {
  /** Keys that existed and end absent. */
  deletes: KeyEntry[];
  /** Keys that did not exist and end present (full rows). */
  inserts: KeyEntry[];
  /** Keys that existed and end present, grouped by the columns known to change (`cols`, in column order). */
  updates: { cols: number[]; entries: KeyEntry[] }[];
}

/**
 * The statements a collapsed chunk needs. `writable` and `alwaysIdentity` come from the target
 * table: key, generated and GENERATED ALWAYS columns are never in an UPDATE's SET list, nor are
 * unchanged-TOAST columns. A key that did not exist and ends absent needs nothing.
 */
export function planKeyed(rel: Relation, entries: Iterable<KeyEntry>, writable: number[], alwaysIdentity: Set<number>): KeyedPlan {
  const deletes: KeyEntry[] = [];
  const inserts: KeyEntry[] = [];
  const updates = new Map<string, { cols: number[]; entries: KeyEntry[] }>();
  const keySet = new Set(rel.key);
  const nonKey = writable.filter((i) => !keySet.has(i) && !alwaysIdentity.has(i));
  for (const e of entries) {
    if (e.values === undefined) {
      if (e.existed) deletes.push(e);
    } else if (!e.existed) {
      inserts.push(e);
    } else {
      const cols = nonKey.filter((i) => e.values![i] !== TOAST);
      const mask = cols.join(',');
      let group = updates.get(mask);
      if (!group) updates.set(mask, (group = { cols, entries: [] }));
      group.entries.push(e);
    }
  }
  return { deletes, inserts, updates: [...updates.values()] };
}

export interface MultisetPlan {
  /** Rows to remove, grouped by which of `cols` are NULL; `counts[i]` copies of `rows[i]` each. */
  removals: { nulls: Set<number>; rows: Row[]; counts: string[] }[];
  /** Rows to add (repeated as often as they are added). */
  additions: Row[];
}

/**
 * A REPLICA IDENTITY FULL table's changes as a multiset delta over the columns `cols`: rows
 * out and rows in, pairs inside the chunk cancelling out. An UPDATE's unchanged-TOAST values
 * come from its old row (which never holds markers for such tables).
 */
export function planMultiset(changes: Change[], cols: number[]): MultisetPlan {
  const delta = new Map<string, { row: Row; n: number }>();
  const add = (row: Row, n: number) => {
    const id = identity(cols.map((i) => row[i]!));
    const d = delta.get(id);
    if (d) d.n += n;
    else delta.set(id, { row, n });
  };
  for (const ch of changes) {
    if (ch.op === 'I') add(ch.new!, 1);
    else if (ch.op === 'D') add(ch.old!, -1);
    else {
      add(ch.old!, -1);
      add(fill(ch.new!, ch.old!), 1);
    }
  }
  // Rows to remove, grouped by NULL pattern (so `t.c = u.c` / `t.c IS NULL` conditions can use indexes).
  const removals = new Map<string, { nulls: Set<number>; rows: Row[]; counts: string[] }>();
  const additions: Row[] = [];
  for (const { row, n } of delta.values()) {
    if (n < 0) {
      const pattern = cols.map((i) => (row[i] === null ? '1' : '0')).join('');
      let group = removals.get(pattern);
      if (!group) removals.set(pattern, (group = { nulls: new Set(cols.filter((i) => row[i] === null)), rows: [], counts: [] }));
      group.rows.push(row);
      group.counts.push(String(-n));
    } else {
      for (let k = 0; k < n; k++) additions.push(row);
    }
  }
  return { removals: [...removals.values()], additions };
}

/**
 * Which rows the applier changed, for the incremental comparison (issue 14): each chunk's keys
 * per table, deduplicated here, written in the chunk's own target transaction (so with the
 * checkpoint that covers them) as one statement per table (control/changed-keys.ts). Tables
 * whose changes carry no usable key (REPLICA IDENTITY FULL or NOTHING) and truncated tables are
 * recorded as a whole, and so are tables with more than WHOLE_TABLE_KEYS keys in one chunk (a
 * bulk change). An UPDATE that moves a row records both its old and its new key.
 */
import type pg from 'pg';
import { recordChangedKeys, recordWholeTableChange } from '../../control/changed-keys.js';
import { ApplyError } from './errors.js';
import { keyValues, type Change, type Relation } from './relation.js';
import { identity } from './values.js';

/** Keys of one table in one chunk above which the table is recorded as changed as a whole. */
export const WHOLE_TABLE_KEYS = 10_000;

const tableOf = (rel: Relation) => ({ schema: rel.message.schema, name: rel.message.name });

export class ChangedKeyRecorder {
  /** Relations whose key columns are committed in the control schema. */
  private readonly keyColumnsKnown = new WeakSet<Relation>();
  /** … and those written in the open target transaction. */
  private keyColumnsPending: Relation[] = [];

  constructor(private readonly migration: string) {}

  /** Records the keys `changes` (one table's part of a chunk, in stream order) touched. */
  async record(client: pg.ClientBase, rel: Relation, changes: Change[]): Promise<void> {
    if (changes.length === 0) return;
    const lastLsn = changes[changes.length - 1]!.lsn;
    if (rel.mode !== 'key') return this.recordWhole(client, rel, lastLsn);
    const keys = new Map<string, { key: (string | null)[]; lsn: string }>();
    const add = (key: (string | null)[], lsn: string) => keys.set(identity(key), { key, lsn });
    try {
      for (const change of changes) {
        if (change.old) add(keyValues(rel, change.old), change.lsn);
        if (change.new) add(keyValues(rel, change.new, change.old), change.lsn);
      }
    } catch (error) {
      // A key value sent as unchanged TOAST without its old value: the row cannot be named.
      if (!(error instanceof ApplyError)) throw error;
      return this.recordWhole(client, rel, lastLsn);
    }
    // A bulk change is cheaper to compare as a whole table (before the fence, by the comparison at
    // the cutover request) than to record key by key at apply time.
    if (keys.size > WHOLE_TABLE_KEYS) return this.recordWhole(client, rel, lastLsn);
    const values: (string | null)[][] = rel.key.map(() => []);
    const lsns: string[] = [];
    for (const { key, lsn } of keys.values()) {
      for (let i = 0; i < key.length; i++) values[i]!.push(key[i]!);
      lsns.push(lsn);
    }
    const newColumns = !this.keyColumnsKnown.has(rel);
    await recordChangedKeys(client, this.migration, {
      table: tableOf(rel),
      ...(newColumns ? { keyColumns: rel.key.map((i) => rel.message.columns[i]!.name) } : {}),
      values,
      lsns,
    });
    if (newColumns) {
      this.keyColumnsKnown.add(rel);
      this.keyColumnsPending.push(rel);
    }
  }

  /** The whole table changed (TRUNCATE, or changes without a usable key) at `lsn`. */
  async recordWhole(client: pg.ClientBase, rel: Relation, lsn: string): Promise<void> {
    await recordWholeTableChange(client, this.migration, tableOf(rel), lsn);
  }

  /** The target transaction committed. */
  committed(): void {
    this.keyColumnsPending = [];
  }

  /** The target transaction was rolled back: key columns written in it are written again. */
  rolledBack(): void {
    for (const rel of this.keyColumnsPending) this.keyColumnsKnown.delete(rel);
    this.keyColumnsPending = [];
  }
}

/**
 * Which rows the applier changed, for the incremental comparison (issue 14): each chunk's keys
 * per table, deduplicated here, written in the chunk's own target transaction (so with the
 * checkpoint that covers them) as one statement for the whole chunk (control/changed-keys.ts).
 * Tables whose changes carry no usable key (REPLICA IDENTITY FULL or NOTHING) and truncated
 * tables are recorded as a whole, and so are tables with more keys in one chunk than
 * WHOLE_TABLE_KEYS and a share of their rows (a bulk change). An UPDATE that moves a row
 * records both its old and its new key.
 */
import type pg from 'pg';
import { recordChanges, type ChangesBatch } from '../../control/changed-keys.js';
import type { TableRef } from '../../catalog/tables.js';
import { parseLsn } from '../pgoutput.js';
import { quoteTable } from '../../sql.js';
import { ApplyError } from './errors.js';
import { keyValues, type Change, type Relation } from './relation.js';
import { identity } from './values.js';

/**
 * Keys of one table in one chunk above which the table is recorded as changed as a whole, when
 * that is also more than a WHOLE_TABLE_SHARE of its rows: reading that many rows by key costs
 * about as much as reading the whole table. A big table keeps its keys through a catch-up, whose
 * chunks hold tens of thousands of transactions.
 */
export const WHOLE_TABLE_KEYS = 10_000;
const WHOLE_TABLE_SHARE = 0.05;
const ROW_ESTIMATE_MS = 10 * 60_000;

const tableOf = (rel: Relation): TableRef => ({ schema: rel.message.schema, name: rel.message.name });

export class ChangedKeyRecorder {
  /** The row estimate of each relation's target table (pg_class.reltuples), read once. */
  private readonly rowEstimates = new WeakMap<Relation, { rows: number; at: number }>();
  /** Relations whose key columns are committed in the control schema. */
  private readonly keyColumnsKnown = new WeakSet<Relation>();
  /** … and those written in the open target transaction. */
  private keyColumnsPending: Relation[] = [];

  constructor(private readonly migration: string) {}

  /** Records what the parts of one chunk (each table's changes, in stream order) touched. */
  async record(client: pg.ClientBase, parts: Iterable<[Relation, Change[]]>): Promise<void> {
    const batch: ChangesBatch = { tables: [], keys: [], lastLsn: '0/0' };
    const newColumns: Relation[] = [];
    for (const [rel, changes] of parts) {
      if (changes.length === 0) continue;
      const lastLsn = changes[changes.length - 1]!.lsn;
      if (parseLsn(lastLsn) > parseLsn(batch.lastLsn)) batch.lastLsn = lastLsn;
      const keys = rel.mode === 'key' ? keysOf(rel, changes) : undefined;
      if (!keys || (keys.size > WHOLE_TABLE_KEYS && keys.size > WHOLE_TABLE_SHARE * (await this.rowEstimate(client, rel)))) {
        batch.tables.push({ table: tableOf(rel), keyColumns: null, wholeLsn: lastLsn });
        continue;
      }
      const table = tableOf(rel);
      for (const { key, lsn } of keys.values()) batch.keys.push({ table, key, lsn });
      if (!this.keyColumnsKnown.has(rel)) {
        batch.tables.push({ table, keyColumns: rel.key.map((i) => rel.message.columns[i]!.name), wholeLsn: null });
        newColumns.push(rel);
      }
    }
    await recordChanges(client, this.migration, batch);
    for (const rel of newColumns) {
      this.keyColumnsKnown.add(rel);
      this.keyColumnsPending.push(rel);
    }
  }

  /** Rows of the relation's target table: its statistics, or its size at 100 bytes a row if never analyzed; read again every ROW_ESTIMATE_MS. */
  private async rowEstimate(client: pg.ClientBase, rel: Relation): Promise<number> {
    const known = this.rowEstimates.get(rel);
    if (known && Date.now() - known.at < ROW_ESTIMATE_MS) return known.rows;
    const { rows } = await client.query<{ rows: string | null }>(
      'SELECT greatest(reltuples, pg_relation_size(oid) / 100, 0)::bigint::text AS rows FROM pg_class WHERE oid = to_regclass($1)',
      [quoteTable(rel.targetRef)],
    );
    const estimate = Number(rows[0]?.rows ?? 0);
    this.rowEstimates.set(rel, { rows: estimate, at: Date.now() });
    return estimate;
  }

  /** The whole tables changed at `lsn` (TRUNCATE). */
  async recordWhole(client: pg.ClientBase, rels: Relation[], lsn: string): Promise<void> {
    const seen = new Set<string>();
    const tables = rels.map(tableOf).filter((t) => !seen.has(`${t.schema}.${t.name}`) && seen.add(`${t.schema}.${t.name}`));
    await recordChanges(client, this.migration, { tables: tables.map((table) => ({ table, keyColumns: null, wholeLsn: lsn })), keys: [], lastLsn: lsn });
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

/**
 * The keys `changes` touched, each with the commit LSN of its last change; undefined when a key
 * value came as unchanged TOAST without its old value (the row cannot be named).
 */
function keysOf(rel: Relation, changes: Change[]): Map<string, { key: (string | null)[]; lsn: string }> | undefined {
  const keys = new Map<string, { key: (string | null)[]; lsn: string }>();
  const add = (key: (string | null)[], lsn: string) => keys.set(identity(key), { key, lsn });
  try {
    for (const change of changes) {
      if (change.old) add(keyValues(rel, change.old), change.lsn);
      if (change.new) add(keyValues(rel, change.new, change.old), change.lsn);
    }
  } catch (error) {
    if (error instanceof ApplyError) return undefined;
    throw error;
  }
  return keys;
}

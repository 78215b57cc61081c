/**
 * Table sync: copies a set of tables at a fresh consistent snapshot while the migration's slot
 * keeps streaming, the way native logical replication's table sync does (srsublsn). A
 * TEMPORARY logical slot is created with an exported snapshot; its consistent point L splits
 * the source's history exactly: every transaction committed before L is in the snapshot, every
 * one from L on is not. Each table's rows are copied at that snapshot and L is recorded as the
 * table's start LSN (pgferry.table_sync, in the caller's target transaction when it has one),
 * and the stream then applies a change of that table only in a transaction whose commit LSN is
 * at least L (SyncedTableFilter): no gap, no duplicate. The tables must be in the publication
 * before syncTables is called.
 */
import { randomBytes } from 'node:crypto';
import { pipeline } from 'node:stream/promises';
import type pg from 'pg';
import { copyColumns, qualified, quoteIdent, quoteTable } from '../sql.js';
import type { TableRef } from '../catalog/tables.js';
import { NameMap, type Names } from '../schema/mapping.js';
import { recordTableSync } from '../control/index.js';
import { importSnapshot } from '../snapshot.js';
import { CANONICAL_SESSION_SQL, SOURCE_READ_SESSION_SQL } from '../connect/index.js';
import { RawCopyOut, rawCopyIn } from '../load/raw-copy.js';
import { StreamingFallback } from './early-apply.js';
import { parseLsn, type PgoutputMessage } from './pgoutput.js';
import { createSlotWithSnapshot } from './slot.js';
import { narrowTruncate, type StreamTransaction } from './stream-filter.js';

export interface TableSyncOptions {
  migration: string;
  /** Opens a replication connection to the source (`replication: 'database'`). */
  connectReplication: () => Promise<pg.Client>;
  connectSource: () => Promise<pg.Client>;
  /**
   * The target session the rows are copied into and the start LSNs recorded on; in an open
   * transaction, everything commits (or not) with it. Its tables are emptied first (TRUNCATE ONLY).
   */
  target: pg.ClientBase;
  /** Where the tables and their columns are on the target (schema/mapping.ts). */
  names?: Names;
}

/** Copies `tables` at one fresh snapshot; returns each table's start LSN by `schema.table`. */
export async function syncTables(options: TableSyncOptions, tables: TableRef[]): Promise<Map<string, string>> {
  const starts = new Map<string, string>();
  if (tables.length === 0) return starts;
  const holder = await createSlotWithSnapshot(options.connectReplication, `pgferry_sync_${randomBytes(6).toString('hex')}`, { temporary: true });
  const source = await options.connectSource();
  try {
    await source.query(SOURCE_READ_SESSION_SQL);
    // As the copy workers: the same text forms on both sides, and no user trigger or FK check fires for copied rows.
    await options.target.query(`${CANONICAL_SESSION_SQL}; SET session_replication_role = replica`);
    await importSnapshot(source, holder.slot.snapshot);
    for (const table of tables) {
      const rows = await copyTable(source, options.target, table, options.names ?? NameMap.IDENTITY);
      await recordTableSync(options.target, options.migration, table, holder.slot.consistentLsn, rows);
      starts.set(qualified(table), holder.slot.consistentLsn);
    }
    await source.query('COMMIT');
  } finally {
    await source.end().catch(() => undefined);
    await holder.release();
  }
  return starts;
}

const COLUMNS_SQL = `SELECT a.attname AS name FROM pg_attribute a
  JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE n.nspname = $1 AND c.relname = $2 AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = ''
 ORDER BY a.attnum`;

/** The table's rows, in the columns both sides have (stored, not generated), replacing the target's. */
async function copyTable(source: pg.Client, target: pg.ClientBase, table: TableRef, names: Names): Promise<number> {
  const to = names.table(table);
  const [fromColumns, toColumns] = await Promise.all([
    source.query<{ name: string }>(COLUMNS_SQL, [table.schema, table.name]),
    target.query<{ name: string }>(COLUMNS_SQL, [to.schema, to.name]),
  ]);
  const onTarget = new Set(toColumns.rows.map((r) => r.name));
  const copied = fromColumns.rows.map((r) => r.name).filter((name) => onTarget.has(names.column(table, name)));
  await target.query(`TRUNCATE ONLY ${quoteTable(to)}`);
  const reader = source.query(new RawCopyOut(`COPY ${quoteTable(table)}${copyColumns(copied.map(quoteIdent))} TO STDOUT`));
  const writer = target.query(rawCopyIn(`COPY ${quoteTable(to)}${copyColumns(copied.map((c) => quoteIdent(names.column(table, c))))} FROM STDIN`));
  await pipeline(reader, writer);
  return reader.rowCount;
}

/**
 * Drops the stream's changes of synced tables in transactions committed before their start
 * LSN (they are in the copy). In a transaction streamed while still in progress the commit LSN
 * is not known yet: a change of such a table there falls back to whole transactions.
 */
export class SyncedTableFilter {
  private readonly starts = new Map<string, bigint>();
  private readonly names = new Map<number, string>();

  constructor(
    private readonly transaction: StreamTransaction,
    starts: Map<string, string> = new Map(),
  ) {
    for (const [table, lsn] of starts) this.set(table, lsn);
  }

  set(table: string, lsn: string): void {
    this.starts.set(table, parseLsn(lsn));
  }

  filter(message: PgoutputMessage): PgoutputMessage | undefined {
    if (this.starts.size === 0) return message;
    switch (message.tag) {
      case 'relation':
        this.names.set(message.relationId, `${message.schema}.${message.name}`);
        return message;
      case 'insert':
      case 'update':
      case 'delete':
        return this.keeps(message.relationId) ? message : undefined;
      case 'truncate':
        return narrowTruncate(message, (id) => this.keeps(id));
      default:
        return message;
    }
  }

  private keeps(relationId: number): boolean {
    const start = this.starts.get(this.names.get(relationId) ?? '');
    if (start === undefined) return true;
    if (this.transaction.inProgress) throw new StreamingFallback('a change of a table synced at its own snapshot arrived in a transaction streamed while in progress');
    return this.transaction.commitLsn >= start;
  }
}

/**
 * The CDC apply engine: decoded pgoutput messages in, whole source transactions out, applied
 * to the target set-wise with exactly the result of applying every source transaction one by
 * one in commit order (DESIGN.md, "Apply engine" and "Consistency").
 *
 * Transaction model. The target transaction opens lazily and spans one or more whole source
 * transactions; it commits only in flush(), at a source-commit boundary, together with the
 * checkpoint (pgferry.replication.applied_lsn = end LSN of the last source commit included).
 * Changes are buffered per table in stream order; when the buffer reaches maxChunkRows or
 * maxChunkBytes (even in the middle of one huge source transaction) it is applied as a chunk
 * inside the still-open target transaction, so memory stays bounded. That chunk runs in the
 * background while the next one is buffered (the target works while this process decodes);
 * anything else that talks to the target waits for it first, so at most two chunks are held.
 *
 * A chunk is applied table by table (under session_replication_role = replica no trigger or
 * foreign key ties tables together, so per-table order is all that matters), each table in a
 * SAVEPOINT:
 * - Only inserts: COPY (text format, the exact text the source sent).
 * - Tables with a key (replica identity default = primary key, or index): changes collapse per
 *   key into a final state (absent / full row / patch of known columns on top of the target's
 *   row) and whether the key existed before the chunk; then one DELETE, one UPDATE per set of
 *   known columns (unchanged-TOAST columns are left out of SET lists) and one COPY of new rows,
 *   the DELETE/UPDATE over unnest() of array parameters whose elements are the source's text,
 *   parsed by each column type's own input function. Joins probe the key's unique index
 *   (nested loop) instead of hashing the whole table for every chunk.
 * - Tables with REPLICA IDENTITY FULL: a multiset of rows (an UPDATE = one old row out, the new
 *   row in; pairs inside the chunk cancel). Rows to remove are matched on all old values:
 *   equality on columns whose type has a btree opclass (per NULL pattern, so indexes and hash
 *   joins work) plus `ROW(…)::text` equality, which is exact (NULL vs '', -0 vs 0) and works
 *   for types without equality (json, point, xml); row_number() per distinct old row removes
 *   exactly as many duplicates as the source deleted.
 * - Conflicts are detected set-wise by comparing affected-row counts with the expected counts
 *   (and by unique_violation from the COPY of new keys). If a count is off, or a set-wise
 *   statement hits unique_violation/exclusion_violation (e.g. a unique value moved between rows
 *   inside the chunk), or the chunk cannot be collapsed exactly (a key-changing UPDATE whose
 *   unchanged TOAST value lives only in the target's old row), the table's part of the chunk is
 *   rolled back to the savepoint and applied row by row in exact source order with single-row
 *   parameterized statements: the reference semantics, which also implements the conflict policy.
 *
 * Conflict policy (a conflict is an INSERT whose key exists, or an UPDATE/DELETE whose row is
 * missing): `error` throws ApplyConflictError (and rolls the target transaction back: nothing of
 * it is committed); `ignore` skips the change; `overwrite` makes the target match the source:
 * INSERT on an existing key updates that row, UPDATE of a missing row inserts the new row when
 * it is fully known (if it carries unchanged-TOAST markers the value exists nowhere but in the
 * missing row, so the change is skipped and counted as ignored), DELETE of a missing row does
 * nothing (counted as overwritten: the target already matches).
 *
 * Other rules: extra target columns are left alone (but a REPLICA IDENTITY FULL row that the
 * set-wise path updates is deleted and re-inserted, so its extra columns get their defaults);
 * generated target columns are never written; GENERATED ALWAYS identity columns are inserted
 * with OVERRIDING SYSTEM VALUE and left out of UPDATE SET lists (the source can only change
 * them to DEFAULT, which is applied as a move of the row when they form the key).
 *
 * Values are never parsed in JS and never concatenated into SQL: they travel as bound text
 * parameters or COPY data. The caller configures the target session (`SET
 * session_replication_role = replica` and CANONICAL_SESSION_SQL).
 */
import { createHash } from 'node:crypto';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type pg from 'pg';
import { from as copyFrom } from 'pg-copy-streams';
import { CONTROL_SCHEMA } from '../catalog/tables.js';
import { quoteIdent, quoteTable } from '../sql.js';
import { isTransient } from '../connect/index.js';
import { PgferryError } from '../errors.js';
import type { PgoutputMessage, RelationMessage, TupleValue } from './pgoutput.js';

export type ConflictPolicy = 'error' | 'ignore' | 'overwrite';

export interface ApplierOptions {
  /** Key of the row in pgferry.replication. */
  migration: string;
  conflictPolicy: ConflictPolicy;
  /** Buffered row changes at which a chunk is applied inside the still-open target transaction. Default 50 000. */
  maxChunkRows?: number;
  /** Approximate size of buffered values at which a chunk is applied. Default 64 MiB. */
  maxChunkBytes?: number;
}

export interface FlushResult {
  /** End LSN of the last source commit now committed on the target; undefined when flush() had nothing to commit. */
  appliedLsn: string | undefined;
  transactions: number;
  rows: number;
}

export interface ApplierStats {
  /** Source transactions committed on the target. */
  transactions: number;
  /** Source row changes (insert/update/delete messages) committed on the target. */
  rows: number;
  /** Per-table parts of chunks applied set-wise. */
  setWiseChunks: number;
  /** Per-table parts of chunks applied row by row (fallback). */
  rowByRowChunks: number;
  conflictsIgnored: number;
  conflictsOverwritten: number;
}

/** A change that conflicts with the target's rows under conflictPolicy "error". */
export class ApplyConflictError extends PgferryError {
  constructor(
    message: string,
    readonly details: { table: string; operation: 'INSERT' | 'UPDATE' | 'DELETE'; key: string; commitLsn: string },
  ) {
    super('pgferry.ApplyConflict', message);
  }
}

/** Any other failure to apply changes (missing table or column, replica identity, a rejected value). */
export class ApplyError extends PgferryError {
  constructor(
    message: string,
    /** SQLSTATE of the underlying database error, when there is one. */
    readonly code?: string,
    options?: { cause?: unknown },
  ) {
    super('pgferry.ApplyFailed', message, options);
  }
}

const CONTROL = quoteIdent(CONTROL_SCHEMA);

/** The applied LSN the target holds for a migration (committed), or undefined. */
export async function readAppliedLsn(target: pg.Client, migration: string): Promise<string | undefined> {
  const { rows } = await target.query<{ lsn: string | null }>(
    `SELECT applied_lsn::text AS lsn FROM ${CONTROL}.replication WHERE migration = $1`,
    [migration],
  );
  return rows[0]?.lsn ?? undefined;
}

// Commit times are microseconds since 2000-01-01 UTC; split so both factors stay exact in float8.
const CHECKPOINT_SQL = `UPDATE ${CONTROL}.replication
   SET applied_lsn = $2::pg_lsn,
       applied_commit_time = '2000-01-01 00:00:00+00'::timestamptz
                             + ($3::bigint / 1000000) * interval '1 second'
                             + ($3::bigint % 1000000) * interval '1 microsecond',
       applied_at = now(),
       transactions_applied = transactions_applied + $4::bigint,
       rows_applied = rows_applied + $5::bigint
 WHERE migration = $1`;

// ---------------------------------------------------------------------------------------------
// Buffered representation

const TOAST: unique symbol = Symbol('unchanged-toast');
/** One column value: text output form, NULL, or "unchanged TOAST value, not sent". */
type Val = string | null | typeof TOAST;
type Row = Val[];

interface Change {
  op: 'I' | 'U' | 'D';
  /** Old key ('K') or old tuple ('O'), when sent. */
  old: Row | undefined;
  new: Row | undefined;
  /** Commit LSN of the source transaction (its begin message's final LSN). */
  lsn: string;
}

interface TablePart {
  changes: Change[];
  insertsOnly: boolean;
}

const DONE: Promise<void> = Promise.resolve();

interface TargetColumn {
  quoted: string;
  /** format_type on the target, e.g. `character(84)`. */
  type: string;
  /** format_type of its array type with the same typmod, e.g. `character(84)[]`; null for arrays (no array-of-array type). */
  arrayType: string | null;
  /** Array element delimiter (`,` except e.g. box's `;`). */
  delim: string;
  /** Equality usable to pre-filter full-identity matches: 'plain' (`=`), a type to cast both sides to, or null. */
  eq: string | null;
}

interface TargetTable {
  quoted: string;
  /** `ONLY ` for plain tables (never touch inheritance children); empty for partitioned tables. */
  only: string;
  partitioned: boolean;
  /** Aligned with the relation message's columns. */
  columns: TargetColumn[];
  /** Column indexes written and matched: present on the target and not generated there. */
  writable: number[];
  /** A unique, immediate, non-partial index on exactly the key columns exists (ON CONFLICT arbiter). */
  uniqueKey: boolean;
  /** GENERATED ALWAYS identity columns: INSERTs need OVERRIDING SYSTEM VALUE, UPDATEs cannot set them (nor could the source, except to DEFAULT). */
  alwaysIdentity: Set<number>;
  /** `OVERRIDING SYSTEM VALUE ` when the table has such a column. */
  overriding: string;
}

interface Relation {
  message: RelationMessage;
  display: string;
  quoted: string;
  mode: 'key' | 'full' | 'nothing';
  /** Key column indexes (mode 'key'). */
  key: number[];
  target?: TargetTable;
}

function newRelation(message: RelationMessage): Relation {
  const key = message.columns.flatMap((c, i) => (c.partOfKey ? [i] : []));
  const mode =
    message.replicaIdentity === 'full' ? 'full' : (message.replicaIdentity === 'default' || message.replicaIdentity === 'index') && key.length > 0 ? 'key' : 'nothing';
  return {
    message,
    display: `${message.schema}.${message.name}`,
    quoted: quoteTable({ schema: message.schema, name: message.name }),
    mode,
    key,
  };
}

const sameLayout = (a: RelationMessage, b: RelationMessage) =>
  a.schema === b.schema &&
  a.name === b.name &&
  a.replicaIdentity === b.replicaIdentity &&
  a.columns.length === b.columns.length &&
  a.columns.every((c, i) => {
    const d = b.columns[i]!;
    return c.name === d.name && c.typeOid === d.typeOid && c.typeMod === d.typeMod && c.partOfKey === d.partOfKey;
  });

const hasToast = (row: Row) => row.includes(TOAST);
/** Fills unchanged-TOAST markers of `row` from `base` (which may itself hold markers). */
const fill = (row: Row, base: Row): Row => row.map((v, i) => (v === TOAST ? base[i]! : v));
/**
 * An unambiguous string identity for a list of values: text output never contains NUL, so a
 * single value is itself (NULL = one NUL character), and several values are type-prefixed and
 * NUL-separated.
 */
function identity(values: Val[]): string {
  if (values.length === 1) {
    const v = values[0]!;
    return v === null ? '\u0000' : v === TOAST ? '\u0000u' : v;
  }
  let id = '';
  for (let i = 0; i < values.length; i++) {
    const v = values[i]!;
    id += (i > 0 ? '\u0000' : '') + (v === null ? 'n' : v === TOAST ? 'u' : 't' + v);
  }
  return id;
}

const NEEDS_ESCAPE = /["\\]/;
const ESCAPE = /["\\]/g;

/** A PostgreSQL array literal of text values, every element quoted, for the element type's own input function. */
function arrayLiteral(values: (string | null)[], delim: string): string {
  const parts = new Array<string>(values.length);
  for (let i = 0; i < values.length; i++) {
    const v = values[i]!;
    parts[i] = v === null ? 'NULL' : NEEDS_ESCAPE.test(v) ? `"${v.replace(ESCAPE, '\\$&')}"` : `"${v}"`;
  }
  return `{${parts.join(delim)}}`;
}

const COPY_SPECIAL = /[\\\n\r\t]/;
const COPY_ESCAPES: Record<string, string> = { '\\': '\\\\', '\n': '\\n', '\r': '\\r', '\t': '\\t' };
const COPY_ESCAPE = /[\\\n\r\t]/g;

/** Rows as COPY text format: the type's input function sees exactly the text output the source sent. */
function* copyText(rows: Row[], cols: number[]): Generator<string> {
  let lines: string[] = [];
  let size = 0;
  for (const row of rows) {
    let line = '';
    for (let j = 0; j < cols.length; j++) {
      const v = row[cols[j]!] as string | null;
      if (j > 0) line += '\t';
      line += v === null ? '\\N' : COPY_SPECIAL.test(v) ? v.replace(COPY_ESCAPE, (c) => COPY_ESCAPES[c]!) : v;
    }
    lines.push(line);
    size += line.length;
    if (size >= 1 << 20) {
      yield lines.join('\n') + '\n';
      lines = [];
      size = 0;
    }
  }
  if (lines.length > 0) yield lines.join('\n') + '\n';
}

class Params {
  readonly values: string[] = [];
  add(value: string | null, cast: string): string {
    this.values.push(value as string);
    return `$${this.values.length}::${cast}`;
  }
}

/** `unnest($1::t1[], …) AS u(c<i>, …)` over per-column value lists, and each column's typed expression. */
function unnest(
  table: TargetTable,
  cols: number[],
  data: (string | null)[][],
  params: Params,
  extra: { name: string; values: string[] }[] = [],
  ordinality = false,
): { from: string; expr: (i: number) => string } {
  const args = cols.map((i, j) => {
    const c = table.columns[i]!;
    return c.arrayType ? params.add(arrayLiteral(data[j]!, c.delim), c.arrayType) : params.add(arrayLiteral(data[j]!, ','), 'text[]');
  });
  for (const e of extra) args.push(params.add(arrayLiteral(e.values, ','), 'int8[]'));
  const names = [...cols.map((i) => `c${i}`), ...extra.map((e) => e.name), ...(ordinality ? ['ord'] : [])];
  return {
    from: `unnest(${args.join(', ')})${ordinality ? ' WITH ORDINALITY' : ''} AS u(${names.join(', ')})`,
    expr: (i) => {
      const c = table.columns[i]!;
      return c.arrayType ? `u.c${i}` : `u.c${i}::${c.type}`;
    },
  };
}

const CONFLICT_CODES = new Set(['23505', '23P01']); // unique_violation, exclusion_violation

const truncateText = (v: string, max = 80) => (v.length > max ? `${v.slice(0, max)}…(${v.length} chars)` : v);

/** A database error with the table's name in a readable message; lost connections and (on the set-wise path) unique/exclusion violations stay as they are. */
function readable(error: unknown, table: string, setWise: boolean): unknown {
  const e = error as { code?: string; severity?: string; message?: string; detail?: string };
  if (!e || typeof e.code !== 'string' || !e.severity || isTransient(error) || (setWise && CONFLICT_CODES.has(e.code))) return error;
  return new ApplyError(`Applying changes to ${table} on the target failed: ${e.message}${e.detail ? ` (${e.detail})` : ''}`, e.code, { cause: error });
}

/**
 * The condition matching target row `s` to one full row (REPLICA IDENTITY FULL) over the
 * writable columns: equality where the type has a btree opclass (`IS NULL` for NULL values),
 * plus exact `ROW(…)::text` equality. `expr(i)` is the typed value of non-NULL column i.
 */
function fullRowMatch(table: TargetTable, isNull: (i: number) => boolean, expr: (i: number) => string): string {
  const cols = table.writable;
  return [
    ...cols.flatMap((i) => {
      const c = table.columns[i]!;
      if (isNull(i)) return [`s.${c.quoted} IS NULL`];
      if (c.eq === 'plain') return [`s.${c.quoted} = ${expr(i)}`];
      if (c.eq) return [`s.${c.quoted}::${c.eq} = (${expr(i)})::${c.eq}`];
      return [];
    }),
    `ROW(${cols.map((i) => `s.${table.columns[i]!.quoted}`).join(', ')})::text = ROW(${cols
      .map((i) => (isNull(i) ? `NULL::${table.columns[i]!.type}` : expr(i)))
      .join(', ')})::text`,
  ].join(' AND ');
}

// ---------------------------------------------------------------------------------------------

const TARGET_SQL = `
SELECT c.relkind::text AS relkind,
  (SELECT json_agg(json_build_object(
            'name', a.attname,
            'type', format_type(a.atttypid, a.atttypmod),
            'arrayType', CASE WHEN t.typarray <> 0 THEN format_type(t.typarray, a.atttypmod) END,
            'delim', t.typdelim::text,
            'generated', a.attgenerated <> '',
            'identityAlways', a.attidentity = 'a',
            'eq', CASE
                    WHEN t.typtype = 'e' THEN 'plain'
                    WHEN t.typcategory = 'A' OR t.typtype IN ('c', 'r', 'm', 'p') THEN NULL
                    WHEN EXISTS (SELECT 1 FROM pg_opclass oc JOIN pg_am am ON am.oid = oc.opcmethod
                                  WHERE am.amname = 'btree' AND oc.opcdefault
                                    AND oc.opcintype = CASE WHEN t.typtype = 'd' THEN t.typbasetype ELSE t.oid END) THEN 'plain'
                    ELSE (SELECT format_type(oc.opcintype, NULL) FROM pg_opclass oc JOIN pg_am am ON am.oid = oc.opcmethod
                            JOIN pg_cast k ON k.castsource = CASE WHEN t.typtype = 'd' THEN t.typbasetype ELSE t.oid END
                                          AND k.casttarget = oc.opcintype AND k.castmethod = 'b' AND k.castcontext = 'i'
                           WHERE am.amname = 'btree' AND oc.opcdefault ORDER BY oc.opcintype LIMIT 1)
                  END)
          ORDER BY a.attnum)
     FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid
    WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped) AS columns,
  (SELECT json_agg((SELECT array_agg(a.attname::text) FROM unnest(i.indkey) k(attnum)
                      JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = k.attnum))
     FROM pg_index i
    WHERE i.indrelid = c.oid AND i.indisunique AND i.indimmediate AND i.indisvalid AND i.indisready
      AND i.indpred IS NULL AND i.indexprs IS NULL) AS unique_indexes
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE n.nspname = $1 AND c.relname = $2 AND c.relkind IN ('r', 'p')`;

interface KeyEntry {
  /** Key values (aligned with Relation.key). */
  key: (string | null)[];
  existed: boolean;
  /** Final row (full width, may hold TOAST markers = patch), or undefined = absent. */
  values: Row | undefined;
}

export class Applier {
  private readonly maxChunkRows: number;
  private readonly maxChunkBytes: number;
  private readonly relations = new Map<number, Relation>();
  /** Buffered changes per table, tables in order of first appearance. */
  private chunk = new Map<Relation, TablePart>();
  private chunkRows = 0;
  private chunkBytes = 0;

  private inSourceTx = false;
  private txLsn = '0/0';
  private txRows = 0;
  private pending = 0;
  private pendingRows = 0;
  private lastEndLsn: string | undefined;
  private lastCommitTime = 0n;
  private targetOpen = false;
  private failed: unknown;
  /** The chunk being applied in the background while the next one is buffered. */
  private inflight: Promise<void> | undefined;
  private savedSettings: { h: string; m: string; w: string } | undefined;

  readonly stats: ApplierStats = { transactions: 0, rows: 0, setWiseChunks: 0, rowByRowChunks: 0, conflictsIgnored: 0, conflictsOverwritten: 0 };

  constructor(
    private readonly target: pg.Client,
    private readonly options: ApplierOptions,
  ) {
    this.maxChunkRows = Math.max(1, options.maxChunkRows ?? 50_000);
    this.maxChunkBytes = Math.max(1, options.maxChunkBytes ?? 64 * 1024 * 1024);
  }

  get atBoundary(): boolean {
    return !this.inSourceTx;
  }

  get pendingTransactions(): number {
    return this.pending;
  }

  /** Not `async`: the common case (buffering one change) allocates no promise of its own. */
  handle(message: PgoutputMessage): Promise<void> {
    if (this.failed !== undefined) return Promise.reject(this.failedError());
    let work: Promise<void> | undefined;
    try {
      switch (message.tag) {
        case 'begin':
          if (this.inSourceTx) throw new ApplyError(`pgoutput stream out of order: BEGIN of ${message.finalLsn} inside the open source transaction ${this.txLsn}`);
          this.inSourceTx = true;
          this.txLsn = message.finalLsn;
          this.txRows = 0;
          break;
        case 'commit':
          if (!this.inSourceTx) throw new ApplyError(`pgoutput stream out of order: COMMIT ${message.commitLsn} without BEGIN`);
          this.inSourceTx = false;
          this.pending++;
          this.pendingRows += this.txRows;
          this.txRows = 0;
          this.lastEndLsn = message.endLsn;
          this.lastCommitTime = message.commitTime;
          break;
        case 'relation':
          work = this.onRelation(message);
          break;
        case 'insert':
          work = this.buffer(message.relationId, 'I', undefined, message.newTuple);
          break;
        case 'update':
          work = this.buffer(message.relationId, 'U', message.oldTuple ?? message.oldKey, message.newTuple);
          break;
        case 'delete':
          work = this.buffer(message.relationId, 'D', message.oldTuple ?? message.oldKey, undefined);
          break;
        case 'truncate':
          work = this.truncate(message);
          break;
        default:
          break; // type, origin, logical decoding messages
      }
    } catch (error) {
      return this.fail(error);
    }
    return work ? work.catch((error: unknown) => this.fail(error)) : DONE;
  }

  async flush(): Promise<FlushResult> {
    this.assertUsable();
    if (!this.atBoundary) throw new Error('Applier.flush() is only allowed between source transactions (after a commit message).');
    if (this.pending === 0) return { appliedLsn: undefined, transactions: 0, rows: 0 };
    const transactions = this.pending;
    const rows = this.pendingRows;
    const lsn = this.lastEndLsn!;
    try {
      await this.applyChunk(true);
      await this.open();
      const result = await this.target.query(CHECKPOINT_SQL, [this.options.migration, lsn, this.lastCommitTime.toString(), transactions, rows]);
      if (result.rowCount !== 1) {
        throw new ApplyError(
          `Cannot record the applied LSN: ${result.rowCount} rows of ${CONTROL_SCHEMA}.replication have migration = ${JSON.stringify(this.options.migration)} (expected exactly 1). ` +
            'Start replication for this migration first (it registers the row), or check the migration name.',
        );
      }
      await this.target.query('COMMIT');
      this.targetOpen = false;
    } catch (error) {
      return this.fail(error);
    }
    this.pending = 0;
    this.pendingRows = 0;
    this.stats.transactions += transactions;
    this.stats.rows += rows;
    return { appliedLsn: lsn, transactions, rows };
  }

  async abort(): Promise<void> {
    await this.discard(undefined);
  }

  // -------------------------------------------------------------------------------------------

  private reset(): void {
    this.chunk = new Map();
    this.chunkRows = 0;
    this.chunkBytes = 0;
    this.inSourceTx = false;
    this.txRows = 0;
    this.pending = 0;
    this.pendingRows = 0;
    this.targetOpen = false;
  }

  private assertUsable(): void {
    if (this.failed !== undefined) throw this.failedError();
  }

  private failedError(): ApplyError {
    return new ApplyError(
      `The applier failed earlier and its target transaction was rolled back (${(this.failed as Error)?.message ?? this.failed}); call abort() and restart the stream from the applied LSN.`,
    );
  }

  /** Rolls the target transaction back (best effort), remembers the failure and rethrows it. */
  private async fail(error: unknown): Promise<never> {
    await this.discard(error).catch(() => undefined);
    throw error;
  }

  /** Drops everything buffered, records `failed` (undefined = usable again) and rolls back the target transaction if one is open. */
  private async discard(failed: unknown): Promise<void> {
    // A chunk still running in the background must finish (or fail) before the ROLLBACK, or its
    // remaining statements would run outside the transaction.
    await this.drain().catch(() => undefined);
    const wasOpen = this.targetOpen;
    this.reset();
    this.failed = failed;
    if (wasOpen) await this.target.query('ROLLBACK');
  }

  private async open(): Promise<void> {
    if (this.targetOpen) return;
    await this.target.query('BEGIN');
    this.targetOpen = true;
  }

  private async onRelation(message: RelationMessage): Promise<void> {
    const known = this.relations.get(message.relationId);
    if (known && sameLayout(known.message, message)) {
      known.message = message;
      known.target = undefined; // re-read the target catalog before the next use
      return;
    }
    // Buffered changes were decoded against the old layout: apply them before switching.
    if (known && this.chunk.has(known)) await this.applyChunk(true);
    this.relations.set(message.relationId, newRelation(message));
  }

  private relation(id: number): Relation {
    const rel = this.relations.get(id);
    if (!rel) throw new ApplyError(`pgoutput stream has a change for relation ${id} before its Relation message.`);
    return rel;
  }

  private row(rel: Relation, tuple: TupleValue[], what: string): Row {
    if (tuple.length !== rel.message.columns.length) {
      throw new ApplyError(`pgoutput ${what} for ${rel.display} has ${tuple.length} columns, its Relation message ${rel.message.columns.length}.`);
    }
    const row = new Array<Val>(tuple.length);
    for (let i = 0; i < tuple.length; i++) {
      const v = tuple[i]!;
      switch (v.kind) {
        case 'text':
          row[i] = v.value;
          this.chunkBytes += v.value.length;
          break;
        case 'null':
          row[i] = null;
          break;
        case 'unchanged-toast':
          row[i] = TOAST;
          break;
        case 'binary':
          throw new ApplyError(
            `pgoutput sent column ${rel.message.columns[i]!.name} of ${rel.display} in binary format, which the applier does not accept: start replication without the "binary" option.`,
          );
      }
    }
    this.chunkBytes += 16 * tuple.length;
    return row;
  }

  /** Buffers one change; returns a promise only when it applies a chunk or yields to the event loop. */
  private buffer(relationId: number, op: Change['op'], old: TupleValue[] | undefined, tuple: TupleValue[] | undefined): Promise<void> | undefined {
    if (!this.inSourceTx) throw new ApplyError('pgoutput stream out of order: a row change outside BEGIN/COMMIT.');
    const rel = this.relation(relationId);
    if (op !== 'I' && rel.mode === 'nothing') {
      throw new ApplyError(
        `Cannot apply ${op === 'U' ? 'an UPDATE' : 'a DELETE'} to ${rel.display}: the source table has no replica identity (REPLICA IDENTITY NOTHING, or DEFAULT without a primary key), so the change does not say which row it affects. ` +
          `Add a primary key to the source table or run ALTER TABLE ${rel.quoted} REPLICA IDENTITY FULL, then restart replication.`,
      );
    }
    if (op !== 'I' && rel.mode === 'full' && !old) {
      throw new ApplyError(`pgoutput sent ${op === 'U' ? 'an UPDATE' : 'a DELETE'} for ${rel.display} (REPLICA IDENTITY FULL) without the old row.`);
    }
    const change: Change = {
      op,
      old: old && this.row(rel, old, 'old tuple'),
      new: tuple && this.row(rel, tuple, 'new tuple'),
      lsn: this.txLsn,
    };
    if (change.old && rel.mode === 'full' && hasToast(change.old)) {
      throw new ApplyError(`pgoutput sent an old row of ${rel.display} (REPLICA IDENTITY FULL) with an unchanged-TOAST marker; it cannot be matched.`);
    }
    let part = this.chunk.get(rel);
    if (!part) this.chunk.set(rel, (part = { changes: [], insertsOnly: true }));
    part.changes.push(change);
    if (op !== 'I') part.insertsOnly = false;
    this.chunkRows++;
    this.txRows++;
    if (this.chunkRows >= this.maxChunkRows || this.chunkBytes >= this.maxChunkBytes) return this.applyChunk(false);
    if (this.inflight && this.chunkRows % 512 === 0) {
      // Let the event loop process the target's replies so the chunk in flight progresses even
      // when the caller feeds messages from memory (promise chains alone never yield to I/O).
      return new Promise<void>((resolve) => setImmediate(resolve));
    }
    return undefined;
  }

  private async truncate(message: Extract<PgoutputMessage, { tag: 'truncate' }>): Promise<void> {
    const rels = message.relationIds.map((id) => this.relation(id));
    await this.applyChunk(true);
    await this.open();
    if (rels.length === 0) return;
    await this.run(
      `TRUNCATE ${rels.map((r) => r.quoted).join(', ')}${message.restartIdentity ? ' RESTART IDENTITY' : ''}${message.cascade ? ' CASCADE' : ''}`,
      [],
      rels.map((r) => r.display).join(', '),
    );
  }

  /** Waits for the chunk applied in the background, rethrowing its error. */
  private async drain(): Promise<void> {
    const inflight = this.inflight;
    this.inflight = undefined;
    if (inflight) await inflight;
  }

  /**
   * Applies everything buffered inside the (opened) target transaction. With `wait` false the
   * chunk runs in the background while the caller keeps buffering the next one (the target
   * works while this process decodes); the next applyChunk, flush, truncate or abort waits for it
   * first, so statements never interleave and at most two chunks are held in memory.
   */
  private async applyChunk(wait: boolean): Promise<void> {
    await this.drain();
    if (this.chunkRows === 0) return;
    const chunk = this.chunk;
    this.chunk = new Map();
    this.chunkRows = 0;
    this.chunkBytes = 0;
    await this.open();
    const work = (async () => {
      for (const [rel, part] of chunk) await this.applyTable(rel, part);
    })();
    if (wait) return work;
    work.catch(() => undefined); // observed by drain()
    this.inflight = work;
  }

  /** Runs one statement; database errors other than lost connections get the table's name in a readable message. */
  private async run(text: string, values: unknown[], table: string, options: { name?: string; setWise?: boolean } = {}): Promise<pg.QueryResult> {
    const { name, setWise = false } = options;
    try {
      return await this.target.query(name ? { name, text, values } : { text, values });
    } catch (error) {
      throw readable(error, table, setWise);
    }
  }

  /** COPY rows into the table (fastest insert path; a duplicate key raises unique_violation, which falls back to row by row). */
  private async copyIn(rel: Relation, table: TargetTable, cols: number[], rows: Row[]): Promise<void> {
    const sql = `COPY ${table.quoted} (${cols.map((i) => table.columns[i]!.quoted).join(', ')}) FROM STDIN`;
    try {
      await pipeline(Readable.from(copyText(rows, cols)), this.target.query(copyFrom(sql)));
    } catch (error) {
      throw readable(error, rel.display, true);
    }
  }

  /**
   * Join methods for the keyed set-wise statements: a nested loop over the chunk probing the
   * key's unique index costs O(chunk · log table), while the planner, assuming uncached random
   * I/O, prefers hashing the whole table for every chunk. Only used when that index exists;
   * work_mem is raised so the chunk's unnest() result stays in memory.
   */
  private async indexJoinsSql(): Promise<string> {
    this.savedSettings ??= (
      await this.target.query<{ h: string; m: string; w: string }>(
        `SELECT current_setting('enable_hashjoin') AS h, current_setting('enable_mergejoin') AS m, current_setting('work_mem') AS w`,
      )
    ).rows[0]!;
    return `SET LOCAL enable_hashjoin = off; SET LOCAL enable_mergejoin = off; SET LOCAL work_mem = '64MB'`;
  }

  private restoreJoinsSql(): string {
    const { h, m, w } = this.savedSettings!;
    const literal = (v: string) => `'${v.replace(/'/g, "''")}'`;
    return `SET LOCAL enable_hashjoin = ${literal(h)}; SET LOCAL enable_mergejoin = ${literal(m)}; SET LOCAL work_mem = ${literal(w)}`;
  }

  private async targetOf(rel: Relation): Promise<TargetTable> {
    if (rel.target) return rel.target;
    const { rows } = await this.target.query(TARGET_SQL, [rel.message.schema, rel.message.name]);
    const row = rows[0];
    if (!row) {
      throw new ApplyError(`Table ${rel.display} does not exist on the target: create it (schema sync) or remove it from the publication.`);
    }
    const byName = new Map<
      string,
      { name: string; type: string; arrayType: string | null; delim: string; generated: boolean; identityAlways: boolean; eq: string | null }
    >(
      (row.columns ?? []).map((c: { name: string }) => [c.name, c]),
    );
    const columns: TargetColumn[] = [];
    const writable: number[] = [];
    const alwaysIdentity = new Set<number>();
    rel.message.columns.forEach((source, i) => {
      const c = byName.get(source.name);
      if (!c) throw new ApplyError(`Column ${source.name} of ${rel.display} does not exist in the target table: add it to the target, then restart replication.`);
      columns.push({ quoted: quoteIdent(c.name), type: c.type, arrayType: c.arrayType, delim: c.delim, eq: c.eq });
      if (!c.generated) writable.push(i);
      if (c.identityAlways) alwaysIdentity.add(i);
    });
    for (const k of rel.key) {
      if (!writable.includes(k)) throw new ApplyError(`Key column ${rel.message.columns[k]!.name} of ${rel.display} is a generated column on the target.`);
    }
    const keyNames = new Set(rel.key.map((k) => rel.message.columns[k]!.name));
    const uniqueKey = ((row.unique_indexes ?? []) as string[][]).some((cols) => cols.length === keyNames.size && cols.every((c) => keyNames.has(c)));
    const partitioned = row.relkind === 'p';
    const overriding = alwaysIdentity.size > 0 ? 'OVERRIDING SYSTEM VALUE ' : '';
    rel.target = { quoted: rel.quoted, only: partitioned ? '' : 'ONLY ', partitioned, columns, writable, uniqueKey, alwaysIdentity, overriding };
    return rel.target;
  }

  /** One table's part of a chunk, in a savepoint: set-wise, or row by row when that cannot be exact. */
  private async applyTable(rel: Relation, part: TablePart): Promise<void> {
    const { changes } = part;
    const table = await this.targetOf(rel);
    await this.target.query(rel.mode === 'key' && table.uniqueKey ? `SAVEPOINT pgferry_chunk; ${await this.indexJoinsSql()}` : 'SAVEPOINT pgferry_chunk');
    let exact: boolean;
    try {
      if (part.insertsOnly && (rel.mode !== 'key' || table.uniqueKey)) {
        // Only new rows: straight to COPY. An existing (or repeated) key raises unique_violation.
        await this.copyIn(rel, table, table.writable, changes.map((c) => c.new!));
        exact = true;
      } else {
        exact = rel.mode === 'key' ? await this.setWiseKeyed(rel, table, changes) : await this.setWiseMultiset(rel, table, changes);
      }
    } catch (error) {
      if (!CONFLICT_CODES.has((error as { code?: string })?.code ?? '')) throw error;
      exact = false;
    }
    if (exact) {
      this.stats.setWiseChunks++;
    } else {
      await this.target.query('ROLLBACK TO SAVEPOINT pgferry_chunk'); // also undoes the join settings
      this.stats.rowByRowChunks++;
      for (const change of changes) {
        if (rel.mode === 'key') await this.rowKeyed(rel, table, change);
        else await this.rowMultiset(rel, table, change);
      }
    }
    // RELEASE keeps SET LOCAL values: restore the session's join settings.
    await this.target.query(exact && rel.mode === 'key' && table.uniqueKey ? `RELEASE SAVEPOINT pgferry_chunk; ${this.restoreJoinsSql()}` : 'RELEASE SAVEPOINT pgferry_chunk');
  }

  // ------------------------------------------------------------------ set-wise, tables with a key

  private keyValues(rel: Relation, row: Row, fallback?: Row): (string | null)[] {
    return rel.key.map((k) => {
      const v = row[k]!;
      if (v !== TOAST) return v;
      const f = fallback?.[k];
      if (f === undefined || f === TOAST) throw new ApplyError(`pgoutput sent an unchanged-TOAST key column ${rel.message.columns[k]!.name} for ${rel.display} without its old value.`);
      return f;
    });
  }

  /** Collapses a table's changes per key; undefined when that cannot be done exactly. */
  private collapse(rel: Relation, changes: Change[]): Map<string, KeyEntry> | undefined {
    const entries = new Map<string, KeyEntry>();
    for (const ch of changes) {
      if (ch.op === 'I') {
        const key = this.keyValues(rel, ch.new!);
        const id = identity(key);
        const e = entries.get(id);
        if (!e) entries.set(id, { key, existed: false, values: ch.new! });
        else if (e.values === undefined) e.values = ch.new!;
        else return undefined; // insert over a row the chunk holds: let the row-by-row path report it
      } else if (ch.op === 'U') {
        const newKey = this.keyValues(rel, ch.new!, ch.old);
        const oldKey = ch.old ? this.keyValues(rel, ch.old) : newKey;
        const oldId = identity(oldKey);
        const newId = identity(newKey);
        const e = entries.get(oldId);
        if (oldId === newId) {
          if (!e) entries.set(oldId, { key: oldKey, existed: true, values: ch.new! });
          else if (e.values === undefined) return undefined;
          else e.values = fill(ch.new!, e.values);
          continue;
        }
        let base: Row | undefined;
        if (!e) entries.set(oldId, { key: oldKey, existed: true, values: undefined });
        else if (e.values === undefined) return undefined;
        else {
          base = e.values;
          e.values = undefined;
        }
        let values = ch.new!;
        if (hasToast(values)) {
          // The unchanged value lives in the old row: known only if the chunk holds it.
          if (!base) return undefined;
          values = fill(values, base);
          if (hasToast(values)) return undefined;
        }
        const n = entries.get(newId);
        if (!n) entries.set(newId, { key: newKey, existed: false, values });
        else if (n.values === undefined) n.values = values;
        else return undefined;
      } else {
        const key = this.keyValues(rel, ch.old!);
        const id = identity(key);
        const e = entries.get(id);
        if (!e) entries.set(id, { key, existed: true, values: undefined });
        else if (e.values === undefined) return undefined;
        else e.values = undefined;
      }
    }
    return entries;
  }

  /** Returns false when a count shows a conflict (or the chunk cannot be collapsed): the caller falls back to row by row. */
  private async setWiseKeyed(rel: Relation, table: TargetTable, changes: Change[]): Promise<boolean> {
    const entries = this.collapse(rel, changes);
    if (!entries) return false;
    const deletes: KeyEntry[] = [];
    const inserts: KeyEntry[] = [];
    const updates = new Map<string, { cols: number[]; entries: KeyEntry[] }>();
    const keySet = new Set(rel.key);
    const nonKey = table.writable.filter((i) => !keySet.has(i) && !table.alwaysIdentity.has(i));
    for (const e of entries.values()) {
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
    const keyData = (list: KeyEntry[]) => rel.key.map((_, j) => list.map((e) => e.key[j]!));
    const keyCond = (expr: (i: number) => string) => rel.key.map((k) => `t.${table.columns[k]!.quoted} = ${expr(k)}`).join(' AND ');

    if (deletes.length > 0) {
      const params = new Params();
      const u = unnest(table, rel.key, keyData(deletes), params);
      const sql = `DELETE FROM ${table.only}${table.quoted} AS t USING ${u.from} WHERE ${keyCond(u.expr)}`;
      const result = await this.run(sql, params.values, rel.display, { setWise: true });
      if (result.rowCount !== deletes.length) return false;
    }
    for (const { cols, entries: group } of updates.values()) {
      const params = new Params();
      const all = [...rel.key, ...cols];
      const data = [...keyData(group), ...cols.map((i) => group.map((e) => e.values![i] as string | null))];
      const u = unnest(table, all, data, params);
      if (cols.length === 0) {
        // Nothing known to change: only prove the rows exist.
        const sql = `SELECT count(*)::int8::text AS n FROM ${table.only}${table.quoted} AS t JOIN ${u.from} ON ${keyCond(u.expr)}`;
        const result = await this.run(sql, params.values, rel.display, { setWise: true });
        if (Number(result.rows[0].n) !== group.length) return false;
        continue;
      }
      const set = cols.map((i) => `${table.columns[i]!.quoted} = ${u.expr(i)}`).join(', ');
      const sql = `UPDATE ${table.only}${table.quoted} AS t SET ${set} FROM ${u.from} WHERE ${keyCond(u.expr)}`;
      const result = await this.run(sql, params.values, rel.display, { setWise: true });
      if (result.rowCount !== group.length) return false;
    }
    if (inserts.length > 0) {
      const cols = table.writable;
      if (table.uniqueKey) {
        // The key's unique index turns an existing key into unique_violation: the conflict check comes free.
        await this.copyIn(rel, table, cols, inserts.map((e) => e.values!));
      } else {
        const params = new Params();
        const u = unnest(table, cols, cols.map((i) => inserts.map((e) => e.values![i] as string | null)), params);
        const names = cols.map((i) => table.columns[i]!.quoted).join(', ');
        const sql = `INSERT INTO ${table.quoted} AS t (${names}) ${table.overriding}SELECT ${cols.map((i) => u.expr(i)).join(', ')} FROM ${u.from}
                      WHERE NOT EXISTS (SELECT 1 FROM ${table.only}${table.quoted} AS t WHERE ${keyCond(u.expr)})`;
        const result = await this.run(sql, params.values, rel.display, { setWise: true });
        if (result.rowCount !== inserts.length) return false;
      }
    }
    return true;
  }

  // ------------------------------------------------------------- set-wise, REPLICA IDENTITY FULL

  private async setWiseMultiset(rel: Relation, table: TargetTable, changes: Change[]): Promise<boolean> {
    const delta = new Map<string, { row: Row; n: number }>();
    const cols = table.writable;
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
    for (const { nulls, rows, counts } of removals.values()) {
      const params = new Params();
      const present = cols.filter((i) => !nulls.has(i));
      const u = unnest(table, present, present.map((i) => rows.map((r) => r[i] as string)), params, [{ name: 'n', values: counts }], true);
      const matches = `SELECT s.tableoid AS rel, s.ctid AS tid, u.n, row_number() OVER (PARTITION BY u.ord) AS rn
                         FROM ${table.only}${table.quoted} AS s JOIN ${u.from} ON ${fullRowMatch(table, (i) => nulls.has(i), u.expr)}`;
      const sql = table.partitioned
        ? `DELETE FROM ${table.quoted} AS t WHERE (t.tableoid, t.ctid) IN (SELECT m.rel, m.tid FROM (${matches}) m WHERE m.rn <= m.n)`
        : `DELETE FROM ONLY ${table.quoted} AS t WHERE t.ctid = ANY (ARRAY(SELECT m.tid FROM (${matches}) m WHERE m.rn <= m.n))`;
      const result = await this.run(sql, params.values, rel.display, { setWise: true });
      if (result.rowCount !== counts.reduce((sum, c) => sum + Number(c), 0)) return false;
    }
    if (additions.length > 0) await this.copyIn(rel, table, cols, additions);
    return true;
  }

  // --------------------------------------------------------------------------- row by row

  private prepared(text: string): string {
    return `pgferry_${createHash('sha1').update(text).digest('hex').slice(0, 24)}`;
  }

  private async exec(rel: Relation, text: string, values: (string | null)[]): Promise<number> {
    const result = await this.run(text, values, rel.display, { name: this.prepared(text) });
    return result.rowCount ?? 0;
  }

  private conflict(rel: Relation, change: Change, operation: 'INSERT' | 'UPDATE' | 'DELETE', pairs: string): never {
    const what =
      operation === 'INSERT'
        ? `an INSERT into ${rel.display} found a row with ${pairs} already on the target`
        : `${operation === 'UPDATE' ? 'an UPDATE' : 'a DELETE'} of ${rel.display} found no row with ${pairs} on the target`;
    throw new ApplyConflictError(
      `Conflict applying the source transaction with commit LSN ${change.lsn}: ${what}. Nothing of the current target transaction was committed. ` +
        'Fix the target row so it matches the source, or set cdc.conflictPolicy to "ignore" (skip such changes) or "overwrite" (make the target row match the source), then restart replication.',
      { table: rel.display, operation, key: pairs, commitLsn: change.lsn },
    );
  }

  private describe(rel: Relation, cols: number[], values: (string | null)[]): string {
    return cols.map((i, j) => `${rel.message.columns[i]!.name}=${values[j] === null ? 'NULL' : truncateText(values[j]!)}`).join(', ');
  }

  private async rowKeyed(rel: Relation, table: TargetTable, ch: Change): Promise<void> {
    const policy = this.options.conflictPolicy;
    const col = (i: number) => table.columns[i]!;
    const keyNames = rel.key.map((k) => col(k).quoted).join(', ');
    const upsertSet = (cols: number[]) => cols.filter((i) => !rel.key.includes(i) && !table.alwaysIdentity.has(i));
    /** The key columns equal to the parameters after the first `offset` ones, in key order. */
    const keyCond = (offset: number) => rel.key.map((k, j) => `t.${col(k).quoted} = $${offset + j + 1}::${col(k).type}`).join(' AND ');

    const insertRow = async (row: Row, onConflict: 'nothing' | 'update'): Promise<number> => {
      const cols = table.writable;
      const values = cols.map((i) => row[i] as string | null);
      const exprs = cols.map((i, j) => `$${j + 1}::${col(i).type}`);
      const names = cols.map((i) => col(i).quoted).join(', ');
      if (table.uniqueKey) {
        const update = upsertSet(cols);
        const action =
          onConflict === 'update' && update.length > 0
            ? `DO UPDATE SET ${update.map((i) => `${col(i).quoted} = EXCLUDED.${col(i).quoted}`).join(', ')}`
            : 'DO NOTHING';
        return this.exec(rel, `INSERT INTO ${table.quoted} AS t (${names}) ${table.overriding}VALUES (${exprs.join(', ')}) ON CONFLICT (${keyNames}) ${action}`, values);
      }
      const cond = rel.key.map((k) => `t.${col(k).quoted} = $${cols.indexOf(k) + 1}::${col(k).type}`).join(' AND ');
      if (onConflict === 'update') {
        const update = upsertSet(cols);
        if (update.length > 0) {
          const n = await this.exec(
            rel,
            `UPDATE ${table.only}${table.quoted} AS t SET ${update.map((i) => `${col(i).quoted} = $${cols.indexOf(i) + 1}::${col(i).type}`).join(', ')} WHERE ${cond}`,
            values,
          );
          if (n > 0) return n;
        }
      }
      return this.exec(
        rel,
        `INSERT INTO ${table.quoted} AS t (${names}) ${table.overriding}SELECT ${exprs.join(', ')} WHERE NOT EXISTS (SELECT 1 FROM ${table.only}${table.quoted} AS t WHERE ${cond})`,
        values,
      );
    };

    const updateRow = async (key: (string | null)[], row: Row, includeKey: boolean): Promise<number> => {
      const cols = table.writable.filter((i) => row[i] !== TOAST && (includeKey || !rel.key.includes(i)) && !table.alwaysIdentity.has(i));
      const values: (string | null)[] = cols.map((i) => row[i] as string | null);
      const cond = keyCond(values.length);
      if (cols.length === 0) return this.exec(rel, `SELECT 1 FROM ${table.only}${table.quoted} AS t WHERE ${cond}`, key); // nothing to change: does it exist?
      const set = cols.map((i, j) => `${col(i).quoted} = $${j + 1}::${col(i).type}`).join(', ');
      return this.exec(rel, `UPDATE ${table.only}${table.quoted} AS t SET ${set} WHERE ${cond}`, [...values, ...key]);
    };

    if (ch.op === 'I') {
      if ((await insertRow(ch.new!, 'nothing')) > 0) return;
      const key = this.keyValues(rel, ch.new!);
      if (policy === 'error') this.conflict(rel, ch, 'INSERT', this.describe(rel, rel.key, key));
      if (policy === 'ignore') {
        this.stats.conflictsIgnored++;
        return;
      }
      await updateRow(key, ch.new!, false);
      this.stats.conflictsOverwritten++;
    } else if (ch.op === 'U') {
      const newKey = this.keyValues(rel, ch.new!, ch.old);
      const oldKey = ch.old ? this.keyValues(rel, ch.old) : newKey;
      const keyChanged = identity(oldKey) !== identity(newKey);
      if (keyChanged && rel.key.some((k) => table.alwaysIdentity.has(k))) {
        // An UPDATE cannot set a GENERATED ALWAYS column (the source did SET … = DEFAULT): move the row instead.
        if (hasToast(ch.new!)) {
          throw new ApplyError(
            `Cannot apply an UPDATE of ${rel.display} that changes the GENERATED ALWAYS identity key ${this.describe(rel, rel.key, oldKey)} while leaving a TOASTed value unchanged: make the target column GENERATED BY DEFAULT.`,
          );
        }
        if ((await this.exec(rel, `DELETE FROM ${table.only}${table.quoted} AS t WHERE ${keyCond(0)}`, oldKey)) > 0) {
          if ((await insertRow(ch.new!, 'nothing')) > 0) return;
          throw new ApplyError(`Cannot apply an UPDATE of ${rel.display}: its new key ${this.describe(rel, rel.key, newKey)} already exists on the target.`);
        }
      } else if ((await updateRow(oldKey, ch.new!, keyChanged)) > 0) return;
      if (policy === 'error') this.conflict(rel, ch, 'UPDATE', this.describe(rel, rel.key, oldKey));
      if (policy === 'ignore' || hasToast(ch.new!)) {
        // overwrite with unchanged TOAST values: they exist only in the missing row, so nothing exact can be written.
        this.stats.conflictsIgnored++;
        return;
      }
      await insertRow(ch.new!, 'update');
      this.stats.conflictsOverwritten++;
    } else {
      const key = this.keyValues(rel, ch.old!);
      if ((await this.exec(rel, `DELETE FROM ${table.only}${table.quoted} AS t WHERE ${keyCond(0)}`, key)) > 0) return;
      if (policy === 'error') this.conflict(rel, ch, 'DELETE', this.describe(rel, rel.key, key));
      if (policy === 'ignore') this.stats.conflictsIgnored++;
      else this.stats.conflictsOverwritten++;
    }
  }

  /** `<locator of one target row equal to old>`: SQL selecting one matching row's ctid, and its parameters. */
  private matchOne(table: TargetTable, old: Row, firstParam: number): { where: string; values: string[] } {
    const cols = table.writable;
    const values: string[] = [];
    const param = (i: number) => {
      values.push(old[i] as string);
      return `$${firstParam + values.length - 1}::${table.columns[i]!.type}`;
    };
    const exprs = new Map<number, string>();
    for (const i of cols) if (old[i] !== null) exprs.set(i, param(i));
    const one = `SELECT s.tableoid, s.ctid FROM ${table.only}${table.quoted} AS s WHERE ${fullRowMatch(table, (i) => old[i] === null, (i) => exprs.get(i)!)} LIMIT 1`;
    return {
      where: table.partitioned ? `(t.tableoid, t.ctid) = (${one})` : `t.ctid = (SELECT x.ctid FROM (${one}) x)`,
      values,
    };
  }

  private async rowMultiset(rel: Relation, table: TargetTable, ch: Change): Promise<void> {
    const policy = this.options.conflictPolicy;
    const cols = table.writable;
    const insert = (row: Row) =>
      this.exec(
        rel,
        `INSERT INTO ${table.quoted} (${cols.map((i) => table.columns[i]!.quoted).join(', ')}) ${table.overriding}VALUES (${cols
          .map((i, j) => `$${j + 1}::${table.columns[i]!.type}`)
          .join(', ')})`,
        cols.map((i) => row[i] as string | null),
      );
    if (ch.op === 'I') {
      await insert(ch.new!);
      return;
    }
    const old = ch.old!;
    let affected: number;
    if (ch.op === 'D') {
      const match = this.matchOne(table, old, 1);
      affected = await this.exec(rel, `DELETE FROM ${table.only}${table.quoted} AS t WHERE ${match.where}`, match.values);
    } else {
      const set = cols.filter((i) => ch.new![i] !== TOAST && !table.alwaysIdentity.has(i));
      const values = set.map((i) => ch.new![i] as string | null);
      const match = this.matchOne(table, old, values.length + 1);
      affected =
        set.length === 0
          ? await this.exec(rel, `SELECT 1 FROM ${table.only}${table.quoted} AS t WHERE ${match.where}`, match.values)
          : await this.exec(
              rel,
              `UPDATE ${table.only}${table.quoted} AS t SET ${set.map((i, j) => `${table.columns[i]!.quoted} = $${j + 1}::${table.columns[i]!.type}`).join(', ')} WHERE ${match.where}`,
              [...values, ...match.values],
            );
    }
    if (affected > 0) return;
    if (policy === 'error') this.conflict(rel, ch, ch.op === 'D' ? 'DELETE' : 'UPDATE', this.describe(rel, cols, cols.map((i) => old[i] as string | null)));
    if (policy === 'ignore') {
      this.stats.conflictsIgnored++;
      return;
    }
    if (ch.op === 'U') await insert(fill(ch.new!, old));
    this.stats.conflictsOverwritten++;
  }
}

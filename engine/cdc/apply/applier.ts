/**
 * The Applier: decoded pgoutput messages in, whole source transactions out, applied to the
 * target set-wise with exactly the result of applying every source transaction one by one in
 * commit order (docs/architecture.md, "Apply engine" and "Consistency").
 *
 * Transaction model. The target transaction opens lazily and spans one or more whole source
 * transactions; it commits only in flush(), at a source-commit boundary, together with the
 * checkpoint (checkpoint.ts). Changes are buffered per table in stream order; when the buffer
 * reaches maxChunkRows or maxChunkBytes (even in the middle of one huge source transaction) it
 * is applied as a chunk inside the still-open target transaction, so memory stays bounded. That
 * chunk runs in the background while the next one is buffered (the target works while this
 * process decodes); anything else that talks to the target waits for it first, so at most two
 * chunks are held.
 *
 * Where the rest lives: chunk.ts (one table's part: set-wise or row by row), collapse.ts and
 * set-wise.ts, row-by-row.ts, conflict.ts (the conflict policy), target-table.ts, values.ts.
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
import type pg from 'pg';
import { messageOf } from '../../sql.js';
import type { PgoutputMessage, RelationMessage, TupleValue } from '../pgoutput.js';
import { commitWithCheckpoint } from './checkpoint.js';
import { applyTablePart, ChunkBuffer, type ChunkCounts } from './chunk.js';
import { ConflictResolver, type ConflictCounts, type ConflictPolicy } from './conflict.js';
import { ChangedKeyRecorder } from './changed-keys.js';
import { ApplyError } from './errors.js';
import { newRelation, bufferedBytes, sameLayout, type Change, type Operation, type Relation } from './relation.js';
import { TargetSession } from './session.js';
import { targetTableOf, type TargetTable } from './target-table.js';
import { hasToast, type Row } from './values.js';
import type { Names } from '../../schema/mapping.js';
import { applyFilterSettings, filterPart, movedInToastError, type StreamFilters } from './filter.js';

export interface ApplierOptions {
  /** The migration's name: the key of its checkpoint row in the control schema. */
  migration: string;
  /** The streamer's generation, once claimed: a checkpoint is refused when a newer streamer has taken over. */
  generation?: () => number | undefined;
  conflictPolicy: ConflictPolicy;
  /** Buffered row changes at which a chunk is applied inside the still-open target transaction. Default 50 000. */
  maxChunkRows?: number;
  /** Approximate size of buffered values at which a chunk is applied. Default 64 MiB. */
  maxChunkBytes?: number;
  /** Record which keys each transaction changed, for the incremental comparison at cutover (changed-keys.ts). */
  recordChangedKeys?: boolean;
  /** Row and column filters of the tables (objects.tables[…].where / columns / excludeColumns; filter.ts). */
  filters?: StreamFilters;
  /** Where the source's tables and columns are on the target (the spec's mapping, once applied: schema/mapping.ts). */
  names?: Names;
}

export interface FlushResult {
  /** End LSN of the last source commit now committed on the target; undefined when flush() had nothing to commit. */
  appliedLsn: string | undefined;
  transactions: number;
  rows: number;
}

export interface ApplierStats extends ChunkCounts, ConflictCounts {
  /** Source transactions committed on the target. */
  transactions: number;
  /** Source row changes (insert/update/delete messages) committed on the target. */
  rows: number;
}

export class Applier {
  private readonly maxChunkRows: number;
  private readonly maxChunkBytes: number;
  private readonly session: TargetSession;
  private readonly conflicts: ConflictResolver;
  private readonly changedKeys: ChangedKeyRecorder | undefined;
  private readonly relations = new Map<number, Relation>();
  private chunk = new ChunkBuffer();

  private inSourceTx = false;
  private txLsn = '0/0';
  private txRows = 0;
  private pending = 0;
  private pendingRows = 0;
  private lastEndLsn: string | undefined;
  private lastCommitTime = 0n;
  private failed: unknown;

  readonly stats: ApplierStats = { transactions: 0, rows: 0, setWiseChunks: 0, rowByRowChunks: 0, conflictsIgnored: 0, conflictsOverwritten: 0 };

  constructor(
    target: pg.Client,
    private readonly options: ApplierOptions,
  ) {
    this.maxChunkRows = Math.max(1, options.maxChunkRows ?? 50_000);
    this.maxChunkBytes = Math.max(1, options.maxChunkBytes ?? 64 * 1024 * 1024);
    this.session = new TargetSession(target);
    this.conflicts = new ConflictResolver(options.conflictPolicy, this.stats);
    this.changedKeys = options.recordChangedKeys ? new ChangedKeyRecorder(options.migration) : undefined;
  }

  get atBoundary(): boolean {
    return !this.inSourceTx;
  }

  get pendingTransactions(): number {
    return this.pending;
  }

  /** Not `async`: the common case (buffering one change) returns undefined, with no promise at all. */
  handle(message: PgoutputMessage): Promise<void> | undefined {
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
    return work?.catch((error: unknown) => this.fail(error));
  }

  /** Applies what is buffered and commits it with the checkpoint; only between source transactions. */
  async flush(): Promise<FlushResult> {
    if (this.failed !== undefined) throw this.failedError();
    if (!this.atBoundary) throw new Error('Applier.flush() is only allowed between source transactions (after a commit message).');
    if (this.pending === 0) return { appliedLsn: undefined, transactions: 0, rows: 0 };
    const transactions = this.pending;
    const rows = this.pendingRows;
    const lsn = this.lastEndLsn!;
    try {
      await this.applyChunk(true);
      await commitWithCheckpoint(this.session, {
        migration: this.options.migration,
        lsn,
        commitTime: this.lastCommitTime,
        transactions,
        rows,
        generation: this.options.generation?.(),
      });
    } catch (error) {
      return this.fail(error);
    }
    this.changedKeys?.committed();
    this.pending = 0;
    this.pendingRows = 0;
    this.stats.transactions += transactions;
    this.stats.rows += rows;
    return { appliedLsn: lsn, transactions, rows };
  }

  /**
   * Runs `work` on the target in stream order: what is buffered is applied first, then `work`
   * runs inside the open target transaction (committed with the checkpoint like any change).
   * Cached target-table metadata is read again afterwards: `work` may have changed the schema.
   * What `work` throws fails the applier (the target transaction is rolled back).
   */
  async runInOrder<T>(work: (client: pg.Client) => Promise<T>): Promise<T> {
    if (this.failed !== undefined) throw this.failedError();
    try {
      await this.applyChunk(true);
      await this.session.begin();
      const result = await work(this.session.client);
      for (const rel of this.relations.values()) rel.target = undefined;
      return result;
    } catch (error) {
      return this.fail(error);
    }
  }

  /** Drops everything buffered and rolls the target transaction back; the applier is usable again. */
  async abort(): Promise<void> {
    await this.discard(undefined);
  }

  // -------------------------------------------------------------------------------------------

  private failedError(): ApplyError {
    return new ApplyError(
      `The applier failed earlier and its target transaction was rolled back (${messageOf(this.failed)}); call abort() and restart the stream from the applied LSN.`,
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
    await this.session.drain().catch(() => undefined);
    this.chunk = new ChunkBuffer();
    this.inSourceTx = false;
    this.txRows = 0;
    this.pending = 0;
    this.pendingRows = 0;
    this.failed = failed;
    this.changedKeys?.rolledBack();
    await this.session.rollback();
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
    const rel = newRelation(message, this.options.names);
    applyFilterSettings(rel, this.options.filters);
    this.relations.set(message.relationId, rel);
  }

  private relation(id: number): Relation {
    const rel = this.relations.get(id);
    if (!rel) throw new ApplyError(`pgoutput stream has a change for relation ${id} before its Relation message.`);
    return rel;
  }

  /** Buffers one change; returns a promise only when it applies a chunk or yields to the event loop. */
  private buffer(relationId: number, op: Operation, old: TupleValue[] | undefined, tuple: TupleValue[] | undefined): Promise<void> | undefined {
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
    // Validated, the decoded tuples are the rows (a binary value would have failed here).
    const bytes = (old ? bufferedBytes(rel, old, 'old tuple') : 0) + (tuple ? bufferedBytes(rel, tuple, 'new tuple') : 0);
    const change: Change = { op, old: old as Row | undefined, new: tuple as Row | undefined, lsn: this.txLsn };
    // An inserted row is written whole: an unchanged-TOAST value (an UPDATE the publication's row filter turned into an INSERT) exists only on the source.
    if (op === 'I' && hasToast(change.new!)) throw movedInToastError(rel);
    if (change.old && rel.mode === 'full' && hasToast(change.old)) {
      throw new ApplyError(`pgoutput sent an old row of ${rel.display} (REPLICA IDENTITY FULL) with an unchanged-TOAST marker; it cannot be matched.`);
    }
    this.chunk.add(rel, change, bytes);
    this.txRows++;
    if (this.chunk.rows >= this.maxChunkRows || this.chunk.bytes >= this.maxChunkBytes) return this.applyChunk(false);
    if (this.session.busy && this.chunk.rows % 512 === 0) {
      // Let the event loop process the target's replies so the chunk in flight progresses even
      // when the caller feeds messages from memory (promise chains alone never yield to I/O).
      return new Promise<void>((resolve) => setImmediate(resolve));
    }
    return undefined;
  }

  private async truncate(message: Extract<PgoutputMessage, { tag: 'truncate' }>): Promise<void> {
    const rels = message.relationIds.map((id) => this.relation(id));
    await this.applyChunk(true);
    await this.session.begin();
    if (rels.length === 0) return;
    // pgoutput names every table the source emptied (inheritance children included): each is
    // truncated ONLY, so `TRUNCATE ONLY parent` leaves the children's rows, as on the source.
    const tables: TargetTable[] = [];
    for (const rel of rels) tables.push(await targetTableOf(this.session.client, rel));
    await this.session.run(
      `TRUNCATE ${tables.map((t) => `${t.only}${t.quoted}`).join(', ')}${message.restartIdentity ? ' RESTART IDENTITY' : ''}${message.cascade ? ' CASCADE' : ''}`,
      [],
      rels.map((r) => r.display).join(', '),
    );
    await this.changedKeys?.recordWhole(this.session.client, rels, this.txLsn);
  }

  /**
   * Applies everything buffered inside the (opened) target transaction. With `wait` false the
   * chunk runs in the background while the caller keeps buffering the next one; the next
   * applyChunk, flush, truncate or abort waits for it first, so statements never interleave and
   * at most two chunks are held in memory.
   */
  private async applyChunk(wait: boolean): Promise<void> {
    await this.session.drain();
    if (this.chunk.rows === 0) return;
    const parts = this.chunk.take();
    await this.session.begin();
    const work = (async () => {
      const filters = this.options.filters;
      for (const [rel, whole] of parts) {
        // Rows outside the table's where filter (filter.ts): their changes leave the part, moves become inserts and deletes.
        const part = rel.where && filters ? await filterPart(rel, rel.where, whole, filters) : whole;
        parts.set(rel, part);
        if (part.changes.length > 0) await applyTablePart(this.session, rel, part, this.conflicts, this.stats);
      }
      await this.changedKeys?.record(this.session.client, [...parts].map(([rel, part]) => [rel, part.changes]));
    })();
    if (wait) return work;
    this.session.background(work);
  }
}

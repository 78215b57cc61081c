/**
 * The applier's target session: statements (run, COPY, prepared exec) with readable errors,
 * the target transaction that stays open across calls until the checkpoint commits it (so it is
 * not a withTransaction block), the one chunk applied in the background, and the savepoint each
 * table's part of a chunk runs in.
 */
import { createHash } from 'node:crypto';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type pg from 'pg';
import { from as copyFrom } from 'pg-copy-streams';
import { isTransient } from '../../connect/index.js';
import { copyColumns } from '../../sql.js';
import { isConflictViolation } from './conflict.js';
import { ApplyError } from './errors.js';
import type { TargetTable } from './target-table.js';
import { copyText, type Row } from './values.js';

/** A database error with the table's name in a readable message; lost connections and (on the set-wise path) unique/exclusion violations stay as they are. */
function readable(error: unknown, table: string, setWise: boolean): unknown {
  const e = error as { code?: string; severity?: string; message?: string; detail?: string };
  if (!e || typeof e.code !== 'string' || !e.severity || isTransient(error) || (setWise && isConflictViolation(error))) return error;
  return new ApplyError(`Applying changes to ${table} on the target failed: ${e.message}${e.detail ? ` (${e.detail})` : ''}`, e.code, { cause: error });
}

const SAVEPOINT = 'pgferry_chunk';

export class TargetSession {
  private open = false;
  /** The chunk being applied in the background while the next one is buffered. */
  private inflight: Promise<void> | undefined;
  private savedSettings: { h: string; m: string; w: string } | undefined;

  constructor(readonly client: pg.Client) {}

  /** A target transaction is open (begun, not yet committed or rolled back). */
  get inTransaction(): boolean {
    return this.open;
  }

  /** Opens the target transaction unless it is open. */
  async begin(): Promise<void> {
    if (this.open) return;
    await this.client.query('BEGIN');
    this.open = true;
  }

  async commit(): Promise<void> {
    await this.client.query('COMMIT');
    this.open = false;
  }

  /** Forgets the open transaction and rolls it back, if there is one. */
  async rollback(): Promise<void> {
    const wasOpen = this.open;
    this.open = false;
    if (wasOpen) await this.client.query('ROLLBACK');
  }

  /**
   * Runs `work` in the background (the target works while this process decodes). The next
   * drain() waits for it, so statements never interleave; its error surfaces there.
   */
  background(work: Promise<void>): void {
    work.catch(() => undefined); // observed by drain()
    this.inflight = work;
  }

  /** A chunk is being applied in the background. */
  get busy(): boolean {
    return this.inflight !== undefined;
  }

  /** Waits for the chunk applied in the background, rethrowing its error. */
  async drain(): Promise<void> {
    const inflight = this.inflight;
    this.inflight = undefined;
    if (inflight) await inflight;
  }

  /** Runs one statement; database errors other than lost connections get the table's name in a readable message. */
  async run(text: string, values: unknown[], table: string, options: { name?: string; setWise?: boolean } = {}): Promise<pg.QueryResult> {
    const { name, setWise = false } = options;
    try {
      return await this.client.query(name ? { name, text, values } : { text, values });
    } catch (error) {
      throw readable(error, table, setWise);
    }
  }

  /** Runs a statement as a named prepared statement (row by row: the same text repeats); returns the affected rows. */
  async exec(table: string, text: string, values: (string | null)[]): Promise<number> {
    const name = `pgferry_${createHash('sha1').update(text).digest('hex').slice(0, 24)}`;
    const result = await this.run(text, values, table, { name });
    return result.rowCount ?? 0;
  }

  /** COPY rows into the table (fastest insert path; a duplicate key raises unique_violation, which the set-wise path redoes row by row). */
  async copyIn(display: string, table: TargetTable, cols: number[], rows: Row[]): Promise<void> {
    const sql = `COPY ${table.quoted}${copyColumns(cols.map((i) => table.columns[i]!.quoted))} FROM STDIN`;
    try {
      await pipeline(Readable.from(copyText(rows, cols)), this.client.query(copyFrom(sql)));
    } catch (error) {
      throw readable(error, display, true);
    }
  }

  /**
   * Opens the savepoint of one table's part of a chunk. With `indexJoins`, join methods for the
   * keyed set-wise statements: a nested loop over the chunk probing the key's unique index
   * costs O(chunk · log table), while the planner, assuming uncached random I/O, prefers
   * hashing the whole table for every chunk. Only used when that index exists; work_mem is
   * raised so the chunk's unnest() result stays in memory.
   */
  async savepoint(indexJoins: boolean): Promise<void> {
    if (!indexJoins) {
      await this.client.query(`SAVEPOINT ${SAVEPOINT}`);
      return;
    }
    this.savedSettings ??= (
      await this.client.query<{ h: string; m: string; w: string }>(
        `SELECT current_setting('enable_hashjoin') AS h, current_setting('enable_mergejoin') AS m, current_setting('work_mem') AS w`,
      )
    ).rows[0]!;
    await this.client.query(`SAVEPOINT ${SAVEPOINT}; SET LOCAL enable_hashjoin = off; SET LOCAL enable_mergejoin = off; SET LOCAL work_mem = '64MB'`);
  }

  /** Undoes everything since the savepoint (the join settings too); it stays open. */
  async rollbackToSavepoint(): Promise<void> {
    await this.client.query(`ROLLBACK TO SAVEPOINT ${SAVEPOINT}`);
  }

  /** Releases the savepoint; RELEASE keeps SET LOCAL values, so `restoreJoins` sets the session's join settings back. */
  async releaseSavepoint(restoreJoins: boolean): Promise<void> {
    if (!restoreJoins) {
      await this.client.query(`RELEASE SAVEPOINT ${SAVEPOINT}`);
      return;
    }
    const { h, m, w } = this.savedSettings!;
    const literal = (v: string) => `'${v.replace(/'/g, "''")}'`;
    await this.client.query(
      `RELEASE SAVEPOINT ${SAVEPOINT}; SET LOCAL enable_hashjoin = ${literal(h)}; SET LOCAL enable_mergejoin = ${literal(m)}; SET LOCAL work_mem = ${literal(w)}`,
    );
  }
}

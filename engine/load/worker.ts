/**
 * A copy worker: claims pending work units from the control schema and streams each one
 * source → target with COPY. A unit is one target transaction that also marks the unit done,
 * and the claim is a row lock inside that same transaction: if the worker dies mid-unit, the
 * transaction rolls back, the lock goes, and the unit is simply pending again for the next
 * worker. Nothing is applied twice and nothing needs cleaning up.
 */
import { Transform, type TransformCallback } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type pg from 'pg';
import { type TableRef } from '../catalog/tables.js';
import { copyColumns, messageOf, oneStatement, quoteIdent, quoteTable, sleep } from '../sql.js';
import { PgferryError } from '../errors.js';
import { whereCondition, whereField } from '../spec/where.js';
import { CANONICAL_SESSION_SQL, settleAll, SOURCE_READ_SESSION_SQL } from '../connect/index.js';
import {
  claimUnit,
  markUnitDone,
  recordUnitCopied,
  recordUnitFailure,
  reportUnitBytes,
  startUnitAttempt,
  type WorkUnit,
} from '../control/index.js';
import { importSnapshot } from '../snapshot.js';
import { runReadyIndexJobs } from './index-jobs.js';
import { RawCopyOut, rawCopyIn } from './raw-copy.js';
import { copyLargeObjectUnit, isLargeObjects } from './large-objects.js';
import { FlowControl, type FlowLimits } from '../flow/flow-control.js';

export interface WorkerOptions {
  migration: string;
  snapshot: string;
  /** How often a unit is tried before it is marked failed. */
  maxAttempts: number;
  connectSource: () => Promise<pg.Client>;
  connectTarget: () => Promise<pg.Client>;
  log?: (message: string) => void;
  /**
   * The load's limits (fullLoad.maxRowsPerSecond, maxBytesPerSecond; none given: no limit until
   * pgferry throttle sets one): the worker registers in the control schema and applies its share
   * among the copy workers running (engine/flow/). Without it, no flow control at all.
   */
  flow?: FlowLimits;
  /** Milliseconds before retrying a failed unit, by attempt number (tests shorten it). */
  backoffMs?: (attempt: number) => number;
  /**
   * Told when a unit is done (committed), e.g. for metrics. What it throws is ignored, so an
   * observer cannot fail a unit.
   */
  onUnit?: (unit: CopiedUnit) => void;
}

/** A unit this worker finished. */
export interface CopiedUnit {
  id: number;
  source: TableRef;
  target: TableRef;
  rows: number;
  bytes: number;
}

export interface WorkerSummary {
  units: number;
  rows: number;
  bytes: number;
  failedAttempts: number;
}

type SourceUnit = Pick<WorkUnit, 'source' | 'columns' | 'where' | 'fromPage' | 'toPage' | 'binaryFormat'>;

/** The rows of a unit that filters (a page range and/or `where`) as one SELECT; undefined for a whole table. */
function sourceSelectSql(unit: SourceUnit): string | undefined {
  const filters: string[] = [];
  if (unit.fromPage !== undefined) filters.push(`ctid >= '(${Number(unit.fromPage)},0)'::tid`);
  if (unit.toPage !== undefined) filters.push(`ctid < '(${Number(unit.toPage)},0)'::tid`);
  if (unit.where) filters.push(whereCondition(unit.where, unit.source));
  if (filters.length === 0) return undefined;
  return `SELECT ${unit.columns.map(quoteIdent).join(', ')} FROM ONLY ${quoteTable(unit.source)} WHERE ${filters.join(' AND ')}`;
}

/** The source query of a unit: a plain table COPY when it can, a SELECT when it filters. */
export function sourceCopySql(unit: SourceUnit): string {
  const format = unit.binaryFormat ? 'binary' : 'text';
  const select = sourceSelectSql(unit);
  if (select === undefined) return `COPY ${quoteTable(unit.source)}${copyColumns(unit.columns.map(quoteIdent))} TO STDOUT (FORMAT ${format})`;
  return `COPY (${select}) TO STDOUT (FORMAT ${format})`;
}

/**
 * Before a unit with a `where` filter is copied: pg-copy-streams sends COPY as a simple Query
 * message, which runs every statement in its text, and the filter is text from the spec. So the
 * SELECT inside the COPY is first planned alone through the extended protocol, which refuses a
 * second statement: a SELECT the server parses as one statement holds no `;` of its own and ends
 * in our `)`, so `COPY (select) TO STDOUT` is one statement too (same text, same session, so it
 * is lexed the same). whereCondition has refused such text before; this is the server's word.
 * The transaction is read-only besides (importSnapshot), so the filter cannot write either.
 */
async function checkSourceSelect(source: pg.Client, unit: SourceUnit): Promise<void> {
  if (!unit.where) return;
  try {
    await source.query(oneStatement({ text: `EXPLAIN ${sourceSelectSql(unit)!}` }));
  } catch (error) {
    throw new PgferryError('pgferry.WhereInvalid', `${whereField(unit.source)}: ${messageOf(error)}`);
  }
}

export function targetCopySql(unit: Pick<WorkUnit, 'target' | 'columns' | 'binaryFormat' | 'freeze'>): string {
  const options = [`FORMAT ${unit.binaryFormat ? 'binary' : 'text'}`, ...(unit.freeze ? ['FREEZE'] : [])];
  return `COPY ${quoteTable(unit.target)}${copyColumns(unit.columns.map(quoteIdent))} FROM STDIN (${options.join(', ')})`;
}

/**
 * Counts the bytes that pass and, with flow control, holds them back to the worker's share of
 * the load's limits: the rows and payload bytes the reader has parsed (at most a buffer ahead of
 * this chunk) are accounted as each chunk passes.
 */
class PacedCounter extends Transform {
  bytes = 0;
  private rowsAccounted = 0;
  private bytesAccounted = 0;

  constructor(
    private readonly reader: RawCopyOut,
    private readonly flow: FlowControl | undefined,
  ) {
    super();
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    this.bytes += chunk.length;
    if (!this.flow) return callback(null, chunk);
    const rows = this.reader.rowCount - this.rowsAccounted;
    const bytes = this.reader.payloadBytes - this.bytesAccounted;
    this.rowsAccounted += rows;
    this.bytesAccounted += bytes;
    if (this.flow.account(rows, bytes)) this.flow.wait().then(() => callback(null, chunk), callback);
    else callback(null, chunk);
  }
}

async function prepareTarget(client: pg.Client): Promise<void> {
  // Replica role: user triggers and FK checks do not fire for copied rows.
  await client.query(`${CANONICAL_SESSION_SQL}; SET session_replication_role = replica; SET synchronous_commit = off`);
}

/** Runs until no pending unit is left; units that fail `maxAttempts` times are marked failed. */
export async function runCopyWorker(options: WorkerOptions): Promise<WorkerSummary> {
  const { migration, snapshot, log = () => undefined } = options;
  const backoff = options.backoffMs ?? ((attempt: number) => Math.min(1000 * 2 ** (attempt - 1), 30_000));
  const summary: WorkerSummary = { units: 0, rows: 0, bytes: 0, failedAttempts: 0 };
  let source: pg.Client | undefined;
  let target: pg.Client | undefined;
  let controlSession: pg.Client | undefined;
  let flow: FlowControl | undefined;
  // The sessions a unit needs, connected side by side (after a failure, only the ones that were
  // closed). Each waits for the others to settle, so none is left open behind a failure.
  const connectSessions = () =>
    settleAll([
      source ??
        options.connectSource().then(async (client) => {
          source = client;
          await client.query(SOURCE_READ_SESSION_SQL);
        }),
      target ??
        options.connectTarget().then(async (client) => {
          target = client;
          await prepareTarget(client);
        }),
    ]);
  try {
    await settleAll([options.connectTarget().then((client) => (controlSession = client)), connectSessions()]);
    const control = controlSession!;
    if (options.flow) flow = await FlowControl.start({ migration, kind: 'load', limits: options.flow, control, log });
    for (;;) {
      await connectSessions();
      if (!source || !target) throw new Error('copy worker: a session was not connected');
      // The unit's transaction is written out rather than withTransaction: it holds the unit row
      // locked while it copies, the source's snapshot transaction commits after it, and on failure
      // the sessions are ended instead of rolled back (a broken COPY can leave one in any state).
      await target.query('BEGIN');
      const claimed = await claimUnit(target, migration);
      if (!claimed) {
        await target.query('COMMIT');
        return summary;
      }
      const { unit } = claimed;
      const attempt = claimed.attempts + 1;
      // The unit row stays locked by this worker's target transaction: attempts live beside it.
      await startUnitAttempt(control, migration, unit.id, attempt);
      try {
        const copied = await copyUnit(source, target, control, migration, unit, snapshot, flow);
        await markUnitDone(target, migration, unit.id, copied);
        await target.query('COMMIT');
        await source.query('COMMIT');
        await recordUnitCopied(control, migration, unit.id, copied);
        summary.units++;
        summary.rows += copied.rows;
        summary.bytes += copied.bytes;
        try {
          options.onUnit?.({ id: unit.id, source: unit.source, target: unit.target, rows: copied.rows, bytes: copied.bytes });
        } catch {
          // An observer never fails a unit.
        }
        log(`unit ${unit.id} ${unit.source.schema}.${unit.source.name}: ${copied.rows} rows, ${copied.bytes} bytes`);
        if (!(await buildReadyIndexes(target, migration, unit, log))) target = undefined;
      } catch (error) {
        summary.failedAttempts++;
        const message = messageOf(error);
        // Fresh connections after a failure: a broken COPY can leave a session in any state.
        await Promise.all([target, source].map((c) => c?.end().catch(() => undefined)));
        target = undefined;
        source = undefined;
        const failed = attempt >= options.maxAttempts;
        await recordUnitFailure(control, migration, unit.id, message, failed);
        log(`unit ${unit.id} ${unit.source.schema}.${unit.source.name} attempt ${attempt} failed: ${message}${failed ? ' (giving up)' : ''}`);
        if (!failed) await sleep(backoff(attempt));
      }
    }
  } finally {
    await flow?.stop();
    await Promise.all([source, target, controlSession].map((c) => c?.end().catch(() => undefined)));
  }
}

/**
 * Builds the indexes and constraints of the unit's table once its last unit is in. False when a
 * build failed: the target session was ended (post-data builds whatever is left; the unit itself is done).
 */
async function buildReadyIndexes(target: pg.Client, migration: string, unit: WorkUnit, log: (line: string) => void): Promise<boolean> {
  const table = `${unit.source.schema}.${unit.source.name}`;
  try {
    const built = await runReadyIndexJobs(target, migration, unit.source);
    if (built > 0) log(`${table}: ${built} index(es) and constraint(s) built`);
    return true;
  } catch (error) {
    log(`${table}: index builds left to post-data: ${messageOf(error)}`);
    await target.end().catch(() => undefined);
    return false;
  }
}

/** Reports progress at most every 500 ms; a failed report is ignored (it is only progress). */
function throttled(report: (bytes: number) => Promise<void>): (bytes: number) => void {
  let last = 0;
  return (bytes) => {
    if (Date.now() - last < 500) return;
    last = Date.now();
    void report(bytes).catch(() => undefined);
  };
}

async function copyUnit(
  source: pg.Client,
  target: pg.Client,
  control: pg.Client,
  migration: string,
  unit: WorkUnit,
  snapshot: string,
  flow: FlowControl | undefined,
): Promise<{ rows: number; bytes: number }> {
  await importSnapshot(source, snapshot);
  if (isLargeObjects(unit.source)) {
    const report = throttled((bytes) => reportUnitBytes(control, migration, unit.id, bytes));
    return copyLargeObjectUnit(source, target, unit, report, flow && ((rows, bytes) => flow.paced(rows, bytes)));
  }
  if (unit.freeze) await target.query(`TRUNCATE ONLY ${quoteTable(unit.target)}`);
  await checkSourceSelect(source, unit);
  const reader = source.query(new RawCopyOut(sourceCopySql(unit)));
  const counter = new PacedCounter(reader, flow);
  const writer = target.query(rawCopyIn(targetCopySql(unit)));
  let reported = 0;
  const progress = setInterval(() => {
    if (counter.bytes === reported) return;
    reported = counter.bytes;
    void reportUnitBytes(control, migration, unit.id, reported).catch(() => undefined);
  }, 500);
  try {
    await pipeline(reader, counter, writer);
  } finally {
    clearInterval(progress);
  }
  return { rows: Number(writer.rowCount ?? 0), bytes: reader.payloadBytes };
}

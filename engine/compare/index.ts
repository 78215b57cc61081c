/**
 * Data comparison of source and target: per-table row counts, or count + checksum per key
 * range with bisection of mismatching ranges down to small ranges whose rows are diffed by
 * key. Only counts and hash sums cross the wire until a range is small.
 */
import type pg from 'pg';
import { type TableRef } from '../catalog/tables.js';
import { qualified } from '../sql.js';
import { settleAll, SOURCE_READ_SESSION_SQL } from '../connect/index.js';
import type { RowDifference, TableComparison } from '../control/index.js';
import { PgferryError } from '../errors.js';
import { checkSnapshotId, importSnapshot } from '../snapshot.js';
import { minus, sameChecksum, Side, WHOLE_TABLE, type Bucket, type Checksum, type Key, type Range } from './side.js';

/** What a comparison finds, as the control schema stores it. */
export type { RowDifference, TableComparison };

export interface CompareTarget {
  source: TableRef;
  target: TableRef;
  columns: string[];
  /** The target's names of `columns`, in the same order, when the mapping renames them (schema/mapping.ts). */
  targetColumns?: string[];
  primaryKey: string[] | null;
  /** Filter applied on the source only: the target holds just the filtered rows. */
  where?: string;
}

export interface CompareOptions {
  method: 'checksum' | 'count';
  chunkRows: number;
  maxDifferences: number;
  /**
   * Keys (in primary key order) of rows that changed between the two sides' snapshots of a
   * consistent pair (steps/consistent-pair.ts): left out on both sides, and so not differences.
   */
  inFlight?: (string | null)[][];
}

/** Bisection stops at ranges this small and lists their rows. */
const LEAF_ROWS = 100;

/** Identical output settings on both sides, so every value's text form (and so its hash) agrees across major versions. */
export async function prepareCompareSession(client: pg.Client): Promise<void> {
  await client.query(`${SOURCE_READ_SESSION_SQL}; SET statement_timeout = 0`);
}

/**
 * Both sides of a comparison on connections of their own, in canonical sessions, the source at
 * `snapshot` (its own snapshot without one) and the target at one of its own (`paired`: no
 * transaction, the body begins consistent pairs); both closed after `body`.
 */
export async function withComparedSides<T>(
  connectSource: () => Promise<pg.Client>,
  connectTarget: () => Promise<pg.Client>,
  snapshot: string | undefined,
  body: (source: pg.Client, target: pg.Client) => Promise<T>,
  { paired = false }: { paired?: boolean } = {},
): Promise<T> {
  const clients: pg.Client[] = [];
  try {
    for (const connect of [connectSource, connectTarget]) clients.push(await connect());
    const [source, target] = clients as [pg.Client, pg.Client];
    await Promise.all([prepareCompareSession(source), prepareCompareSession(target)]);
    if (!paired) await Promise.all([importSnapshot(source, snapshot), importSnapshot(target)]);
    return await body(source, target);
  } finally {
    await Promise.allSettled(clients.map((c) => c.end()));
  }
}

const total = (buckets: Bucket[]): Checksum =>
  buckets.reduce((sum, b) => ({ rows: sum.rows + b.checksum.rows, a: sum.a + b.checksum.a, b: sum.b + b.checksum.b }), { rows: 0, a: 0n, b: 0n });

function sameBuckets(a: Bucket[], b: Bucket[]): boolean {
  return (
    a.length === b.length &&
    a.every((bucket, i) => sameChecksum(bucket.checksum, b[i]!.checksum) && bucket.first.every((k, j) => k === b[i]!.first[j]))
  );
}

/** The target's names of some of `table`'s columns (key columns are among its compared columns). */
export function targetColumnNames(table: CompareTarget, columns: string[]): string[] {
  if (!table.targetColumns) return columns;
  return columns.map((c) => {
    const at = table.columns.indexOf(c);
    if (at < 0) throw new Error(`column ${c} of ${table.source.schema}.${table.source.name} is not among its compared columns`);
    return table.targetColumns![at]!;
  });
}

/** Compares one table. Applies the session settings itself; the caller chooses the transactions. */
export async function compareTable(
  source: pg.Client,
  target: pg.Client,
  table: CompareTarget,
  options: CompareOptions,
): Promise<TableComparison> {
  await Promise.all([prepareCompareSession(source), prepareCompareSession(target)]);
  const key = table.primaryKey?.length ? table.primaryKey : [];
  const [src, tgt] = await Promise.all([
    Side.open(source, table.source, table.columns, key, table.where),
    Side.open(target, table.target, targetColumnNames(table, table.columns), targetColumnNames(table, key)),
  ]);
  const base = { source: table.source, method: options.method, differences: [] as RowDifference[] };

  if (options.method === 'count') {
    const [sourceRows, targetRows] = await Promise.all([src.count(), tgt.count()]);
    const match = sourceRows === targetRows;
    return { ...base, status: match ? 'match' : 'mismatch', sourceRows, targetRows, ranges: 1, mismatchedRanges: match ? 0 : 1 };
  }

  if (key.length === 0) {
    const [s, t] = await Promise.all([src.checksum(WHOLE_TABLE), tgt.checksum(WHOLE_TABLE)]);
    const match = sameChecksum(s, t);
    return {
      ...base,
      status: match ? 'match' : 'mismatch',
      sourceRows: s.rows,
      targetRows: t.rows,
      ranges: 1,
      mismatchedRanges: match ? 0 : 1,
      ...(match ? {} : { note: 'rows cannot be identified without a primary key' }),
    };
  }

  // Both sides bucket their rows the same way at once: identical buckets prove the match in one
  // concurrent pass. Otherwise the target is checked against the source's ranges and bisected.
  const [buckets, targetBuckets] = await Promise.all([src.buckets(options.chunkRows), tgt.buckets(options.chunkRows)]);
  const [sourceTotal, targetTotal] = [total(buckets), total(targetBuckets)];
  if (sameBuckets(buckets, targetBuckets)) {
    return { ...base, status: 'match', sourceRows: sourceTotal.rows, targetRows: sourceTotal.rows, ranges: Math.max(buckets.length, 1), mismatchedRanges: 0 };
  }
  const inFlight = options.inFlight ?? [];
  if (inFlight.length > 0) {
    // Sums are additive: without the rows that changed between the snapshots, the whole tables
    // must agree. One lookup per side instead of reading any range again.
    const [sourceChanged, targetChanged] = await Promise.all([src.keysChecksum(inFlight), tgt.keysChecksum(inFlight)]);
    if (sameChecksum(minus(sourceTotal, sourceChanged), minus(targetTotal, targetChanged))) {
      return {
        ...base,
        status: 'match',
        sourceRows: sourceTotal.rows,
        targetRows: targetTotal.rows,
        ranges: Math.max(buckets.length, 1),
        mismatchedRanges: 0,
        note: `${inFlight.length.toLocaleString('en-US')} row(s) changed while compared: left for the next comparison`,
      };
    }
  }
  // A lasting difference: the ranges are read again (without the rows in flight) and bisected.
  const [srcRanges, tgtRanges] = inFlight.length > 0 ? [src.excluding(inFlight), tgt.excluding(inFlight)] : [src, tgt];
  const bisection = new Bisection(srcRanges, tgtRanges, key, options.maxDifferences);
  let targetRows = 0;
  let mismatchedRanges = 0;
  // One range per source bucket; the first and last are open-ended so target rows below or above every source key are found too.
  const ranges = Math.max(buckets.length, 1);
  for (let i = 0; i < ranges; i++) {
    const range: Range = { lo: i === 0 ? null : buckets[i]!.first, hi: buckets[i + 1]?.first ?? null };
    const [s, t] = await Promise.all([
      inFlight.length > 0 ? srcRanges.checksum(range) : (buckets[i]?.checksum ?? { rows: 0, a: 0n, b: 0n }),
      tgtRanges.checksum(range),
    ]);
    targetRows += t.rows;
    if (sameChecksum(s, t)) continue;
    mismatchedRanges++;
    await bisection.run(range, s, t);
  }
  const sourceRows = sourceTotal.rows;
  return {
    ...base,
    status: mismatchedRanges > 0 ? 'mismatch' : 'match',
    sourceRows,
    targetRows,
    ranges,
    mismatchedRanges,
    differences: bisection.differences,
    ...(bisection.truncated ? { note: `only the first ${options.maxDifferences} differences are listed` } : {}),
  };
}

class Bisection {
  readonly differences: RowDifference[] = [];
  truncated = false;

  constructor(
    private readonly source: Side,
    private readonly target: Side,
    private readonly key: string[],
    private readonly maxDifferences: number,
  ) {}

  /** Narrows a mismatching range (whose checksums on each side are `s` and `t`) down to rows. */
  async run(range: Range, s: Checksum, t: Checksum): Promise<void> {
    if (this.differences.length >= this.maxDifferences) {
      this.truncated = true;
      return;
    }
    if (Math.max(s.rows, t.rows) <= LEAF_ROWS) return this.diffRows(range);
    // Split at the middle key of the side with more rows: that side's halves both shrink, so this ends
    // even when the source has few rows here and the target many.
    const bySource = s.rows >= t.rows;
    const mid = bySource
      ? await this.source.keyAt(range, Math.floor(s.rows / 2))
      : await this.target.keyAt(range, Math.floor(t.rows / 2));
    const left: Range = { lo: range.lo, hi: mid };
    const right: Range = { lo: mid, hi: range.hi };
    const [ls, lt] = await Promise.all([this.source.checksum(left), this.target.checksum(left)]);
    const [half, whole] = bySource ? [ls.rows, s.rows] : [lt.rows, t.rows];
    if (half === 0 || half === whole) {
      throw new PgferryError('pgferry.CompareFailed', 'the table changed while it was being compared (read it in a REPEATABLE READ transaction)');
    }
    // Sums are additive, so the right half's checksums need no query.
    const [rs, rt] = [minus(s, ls), minus(t, lt)];
    if (!sameChecksum(ls, lt)) await this.run(left, ls, lt);
    if (!sameChecksum(rs, rt)) await this.run(right, rs, rt);
  }

  private async diffRows(range: Range): Promise<void> {
    const [sourceRows, targetRows] = await Promise.all([this.source.rowHashes(range), this.target.rowHashes(range)]);
    const onTarget = new Map(targetRows.map((row) => [JSON.stringify(row.key), row]));
    for (const row of sourceRows) {
      const id = JSON.stringify(row.key);
      const other = onTarget.get(id);
      onTarget.delete(id);
      if (!other) this.add(row.key, 'missing');
      else if (other.hash !== row.hash) this.add(row.key, 'different');
    }
    for (const row of onTarget.values()) this.add(row.key, 'extra');
  }

  private add(key: Key, kind: RowDifference['kind']): void {
    if (this.differences.length >= this.maxDifferences) {
      this.truncated = true;
      return;
    }
    this.differences.push({ key: Object.fromEntries(this.key.map((name, i) => [name, key[i] ?? null])), kind });
  }
}

/**
 * Called before each table on the worker's sessions: begins their consistent pair
 * (steps/consistent-pair.ts) with the first table; returns the keys of the table's rows that
 * changed between the two snapshots.
 */
export type PairSnapshots = (source: pg.Client, target: pg.Client, table: CompareTarget) => Promise<(string | null)[][] | undefined>;

async function openSession(connect: () => Promise<pg.Client>, snapshot: string | undefined, paired: boolean): Promise<pg.Client> {
  const client = await connect();
  // A dropped idle connection must fail the next query, not crash the process with an unhandled 'error' event.
  client.on('error', () => undefined);
  try {
    if (!paired) await importSnapshot(client, snapshot);
    return client;
  } catch (error) {
    await client.end().catch(() => undefined);
    throw error;
  }
}

/**
 * Compares tables over `parallelism` connection pairs, each in one REPEATABLE READ transaction per
 * side (with `pair`, a consistent pair); with `snapshot`, the source is read at that
 * exported snapshot (the point the full load copied).
 * Results come back in the order of `tables`; `onTable` sees each as it completes.
 */
export async function compareTables(
  sourceConnect: () => Promise<pg.Client>,
  targetConnect: () => Promise<pg.Client>,
  tables: CompareTarget[],
  options: CompareOptions & { parallelism: number; snapshot?: string; pair?: PairSnapshots; onTable?: (r: TableComparison) => void },
): Promise<TableComparison[]> {
  const { snapshot } = options;
  if (snapshot !== undefined) checkSnapshotId(snapshot);
  const results: TableComparison[] = [];
  let next = 0;
  let failed = false;
  const worker = async () => {
    const clients: pg.Client[] = [];
    try {
      clients.push(await openSession(sourceConnect, snapshot, options.pair !== undefined));
      clients.push(await openSession(targetConnect, undefined, options.pair !== undefined));
      const [source, target] = clients as [pg.Client, pg.Client];
      while (!failed && next < tables.length) {
        const index = next++;
        const table = tables[index]!;
        const inFlight = options.pair ? await options.pair(source, target, table) : undefined;
        const result = await compareTable(source, target, table, { ...options, ...(inFlight ? { inFlight } : {}) });
        results[index] = result;
        options.onTable?.(result);
      }
    } catch (error) {
      failed = true;
      throw error;
    } finally {
      await Promise.allSettled(clients.map((client) => client.end()));
    }
  };
  if (tables.length === 0) return [];
  const workers = Math.max(1, Math.min(options.parallelism, tables.length));
  await settleAll(Array.from({ length: workers }, worker));
  return results;
}

const KEYS_SHOWN = 10;

function formatKey(key: RowDifference['key']): string {
  const parts = Object.entries(key).map(([name, value]) => `${name}=${value ?? 'NULL'}`);
  return parts.length === 1 ? parts[0]! : `(${parts.join(', ')})`;
}

/** One line per mismatching table with the differing keys by kind; empty when everything matches. */
export function describeMismatches(results: TableComparison[]): string {
  return results
    .filter((r) => r.status === 'mismatch')
    .map((r) => {
      let what: string;
      if (r.differences.length > 0) {
        const groups = (['different', 'missing', 'extra'] as const).flatMap((kind) => {
          const keys = r.differences.filter((d) => d.kind === kind).map((d) => formatKey(d.key));
          if (keys.length === 0) return [];
          const more = keys.length > KEYS_SHOWN ? `, … ${keys.length - KEYS_SHOWN} more` : '';
          return [`${kind}: ${keys.slice(0, KEYS_SHOWN).join(', ')}${more}`];
        });
        const n = r.differences.length;
        what = `${n} ${n === 1 ? 'row differs' : 'rows differ'} (${groups.join('; ')})`;
      } else {
        what = `${r.sourceRows} rows on the source, ${r.targetRows} on the target`;
        if (r.method === 'checksum' && r.sourceRows === r.targetRows) what += `, ${r.mismatchedRanges} of ${r.ranges} ranges differ`;
      }
      return `${qualified(r.source)}: ${what}${r.note ? `; ${r.note}` : ''}`;
    })
    .join('\n');
}

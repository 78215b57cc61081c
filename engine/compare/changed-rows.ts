/**
 * The comparison of given rows only (issue 14): the rows the applier changed since a table was
 * verified, fetched by key on both sides: a batch's checksum first (the same row representation
 * as the checksum comparison, side.ts), then, where it differs, each row by presence and hash. The keys are bound
 * as text and cast to the key columns' types on each side.
 */
import { targetColumnNames } from './index.js';
import type pg from 'pg';
import type { RowDifference, TableComparison } from '../control/index.js';
import type { CompareOptions, CompareTarget } from './index.js';
import { sameChecksum, Side } from './side.js';

/** Keys looked up per statement. */
const KEYS_PER_QUERY = 5_000;

/**
 * Compares the rows of `table` with the given `keys` (values of `keyColumns`, in order) on
 * `source` and `target`, each in the caller's transaction. A key on neither side is a row
 * deleted on both: it matches.
 */
export async function compareRowsByKey(
  source: pg.Client,
  target: pg.Client,
  table: CompareTarget,
  keyColumns: string[],
  keys: (string | null)[][],
  options: Pick<CompareOptions, 'method' | 'maxDifferences'>,
): Promise<TableComparison> {
  const [src, tgt] = await Promise.all([
    Side.open(source, table.source, table.columns, keyColumns, table.where),
    Side.open(target, table.target, targetColumnNames(table, table.columns), targetColumnNames(table, keyColumns)),
  ]);
  const differences: RowDifference[] = [];
  let sourceRows = 0;
  let targetRows = 0;
  let batches = 0;
  let mismatchedBatches = 0;
  let differing = 0;
  for (let start = 0; start < keys.length; start += KEYS_PER_QUERY) {
    const batch = keys.slice(start, start + KEYS_PER_QUERY);
    batches++;
    if (options.method === 'checksum') {
      // Only sums cross the wire while the rows agree; a differing batch is read row by row.
      const [s, t] = await Promise.all([src.keysChecksum(batch), tgt.keysChecksum(batch)]);
      if (sameChecksum(s, t)) {
        sourceRows += s.rows;
        targetRows += t.rows;
        continue;
      }
    }
    const [onSource, onTarget] = await Promise.all([src.rowHashesByKeys(batch), tgt.rowHashesByKeys(batch)]);
    sourceRows += onSource.size;
    targetRows += onTarget.size;
    let mismatched = false;
    batch.forEach((key, i) => {
      const s = onSource.get(i);
      const t = onTarget.get(i);
      let kind: RowDifference['kind'] | undefined;
      if (s !== undefined && t === undefined) kind = 'missing';
      else if (s === undefined && t !== undefined) kind = 'extra';
      else if (options.method === 'checksum' && s !== t) kind = 'different';
      if (!kind) return;
      mismatched = true;
      differing++;
      if (differences.length < options.maxDifferences) differences.push({ key: Object.fromEntries(keyColumns.map((name, j) => [name, key[j] ?? null])), kind });
    });
    if (mismatched) mismatchedBatches++;
  }
  return {
    source: table.source,
    method: options.method,
    status: differing > 0 ? 'mismatch' : 'match',
    sourceRows,
    targetRows,
    ranges: batches,
    mismatchedRanges: mismatchedBatches,
    differences,
    ...(differing > differences.length ? { note: `only the first ${options.maxDifferences} differences are listed` } : {}),
  };
}

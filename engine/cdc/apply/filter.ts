/**
 * The applier's side of row filters under CDC (engine/cdc/row-filter.ts): one table's part of a
 * chunk narrowed to the rows its `where` filter selects, every row image evaluated in one
 * statement by the source (never in JavaScript). An INSERT stays when its row is selected; an
 * UPDATE stays an UPDATE when its old and new rows are, becomes an INSERT of the new row when
 * only that one is (moved in), a DELETE of the old row when only that one is (moved out), and is
 * dropped when neither is; a DELETE stays when its old row was selected. Without an old row (a
 * key-identified table whose key did not change) the filter, which reads only key columns
 * (row-filter.ts, filterProblems), gives the old row the new row's answer.
 */
import type { RelationMessage } from '../pgoutput.js';
import type { TablePart } from './chunk.js';
import { ApplyError } from './errors.js';
import type { Change, Relation } from './relation.js';
import { fill, hasToast, TOAST, type Row } from './values.js';

/** Evaluates a table's filter on rows (engine/cdc/row-filter.ts's SourceRowFilter). */
export interface RowMatcher {
  matching(relation: RelationMessage, where: string, rows: (string | null)[][]): Promise<boolean[]>;
}

/** The filters of the stream's tables: what the applier does to a relation's changes, and the evaluation of `where`. */
export interface StreamFilters extends RowMatcher {
  /** The relation's filter (undefined: every row and column). */
  forRelation(relation: RelationMessage): { where?: string; excluded: Set<string> } | undefined;
}

/** Puts a relation's filter on it (a new Relation message starts without). Its key cannot be left out. */
export function applyFilterSettings(rel: Relation, filters: StreamFilters | undefined): void {
  const filter = filters?.forRelation(rel.message);
  if (!filter) return;
  rel.where = filter.where;
  const excluded = new Set(rel.message.columns.flatMap((c, i) => (filter.excluded.has(c.name) ? [i] : [])));
  const key = rel.mode === 'key' ? rel.key.find((k) => excluded.has(k)) : undefined;
  if (key !== undefined) {
    throw new ApplyError(
      `Column ${rel.message.columns[key]!.name} of ${rel.display} is left out by the spec (objects.tables[…].columns / excludeColumns) but identifies its rows (replica identity key): keep it, or run ALTER TABLE ${rel.quoted} REPLICA IDENTITY FULL on the source.`,
    );
  }
  if (excluded.size > 0) rel.excluded = excluded;
}

/** A row as the filter reads it: an unchanged-TOAST value is unknown (the filter reads key columns only when that can happen). */
const known = (row: Row): (string | null)[] => row.map((v) => (v === TOAST ? null : v));

/** `part` narrowed to what the filter selects, as the target must apply it. */
export async function filterPart(rel: Relation, where: string, part: TablePart, matcher: RowMatcher): Promise<TablePart> {
  const rows: (string | null)[][] = [];
  const at = (row: Row) => rows.push(known(row)) - 1;
  const slots = part.changes.map((ch) => {
    const newRow = ch.new && ch.old ? filledFromOld(rel, ch.new, ch.old) : ch.new;
    return { newRow, newAt: newRow ? at(newRow) : -1, oldAt: ch.old ? at(ch.old) : -1 };
  });
  const matches = await matcher.matching(rel.message, where, rows);
  const changes: Change[] = [];
  part.changes.forEach((ch, i) => {
    const { newRow, newAt, oldAt } = slots[i]!;
    const newIn = newAt >= 0 && matches[newAt]!;
    const oldIn = oldAt >= 0 ? matches[oldAt]! : newIn;
    if (ch.op === 'I') {
      if (newIn) changes.push(ch);
    } else if (ch.op === 'D') {
      if (oldIn) changes.push(ch);
    } else if (oldIn && newIn) {
      changes.push(ch);
    } else if (newIn) {
      changes.push({ op: 'I', old: undefined, new: movedInRow(rel, newRow!), lsn: ch.lsn });
    } else if (oldIn) {
      changes.push({ op: 'D', old: ch.old, new: undefined, lsn: ch.lsn });
    }
  });
  return { changes, insertsOnly: changes.every((c) => c.op === 'I') };
}

/**
 * An UPDATE's new row with its unchanged-TOAST values taken from the old row where it has them:
 * all of them under REPLICA IDENTITY FULL, the key columns of an old key (its other columns are
 * not sent, not NULL).
 */
function filledFromOld(rel: Relation, row: Row, old: Row): Row {
  if (rel.mode === 'full') return fill(row, old);
  const filled = [...row];
  for (const k of rel.key) if (filled[k] === TOAST) filled[k] = old[k]!;
  return filled;
}

/** The new row of an UPDATE that moved into the filter: inserted whole, so every value must be known. */
function movedInRow(rel: Relation, row: Row): Row {
  if (hasToast(row)) throw movedInToastError(rel);
  return row;
}

export const movedInToastError = (rel: Relation) =>
  new ApplyError(
    `An UPDATE moved a row of ${rel.display} into its where filter (or a change inserted it) with an unchanged TOASTed value, which the stream carries only in the source's old row: ` +
      `run ALTER TABLE ${rel.quoted} REPLICA IDENTITY FULL on the source (its old rows then carry every value), then resume the migration.`,
  );

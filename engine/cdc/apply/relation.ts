/**
 * The source side of the applier: a table as pgoutput's Relation message describes it (how its
 * rows are identified), and the changes buffered for it. Pure.
 */
import { quoteTable } from '../../sql.js';
import type { TableRef } from '../../catalog/tables.js';
import { NameMap, type Names } from '../../schema/mapping.js';
import type { RelationMessage, TupleValue } from '../pgoutput.js';
import { ApplyError } from './errors.js';
import type { TargetTable } from './target-table.js';
import { BinaryColumnError, rowBytes, TOAST, truncateText, type Row } from './values.js';

export type Operation = 'I' | 'U' | 'D';

export interface Change {
  op: Operation;
  /** Old key ('K') or old tuple ('O'), when sent. */
  old: Row | undefined;
  new: Row | undefined;
  /** Commit LSN of the source transaction (its begin message's final LSN). */
  lsn: string;
}

export interface Relation {
  message: RelationMessage;
  display: string;
  quoted: string;
  /** 'key': rows identified by key columns; 'full': REPLICA IDENTITY FULL, a multiset of rows; 'nothing': inserts only. */
  mode: 'key' | 'full' | 'nothing';
  /** Key column indexes (mode 'key'). */
  key: number[];
  /** The table's name on the target (the spec's mapping; schema/mapping.ts). */
  targetRef: TableRef;
  /** The target's names of the columns, aligned with the message's. */
  targetColumns: string[];
  /** The target table, read from the target's catalog on first use (target-table.ts). */
  target?: TargetTable;
  /** The `where` filter the applier evaluates for this table (apply/filter.ts). */
  where?: string;
  /** Indexes of the columns not carried to the target (objects.tables[…].columns / excludeColumns). */
  excluded?: Set<number>;
}

export function newRelation(message: RelationMessage, names: Names = NameMap.IDENTITY): Relation {
  const key = message.columns.flatMap((c, i) => (c.partOfKey ? [i] : []));
  const mode =
    message.replicaIdentity === 'full' ? 'full' : (message.replicaIdentity === 'default' || message.replicaIdentity === 'index') && key.length > 0 ? 'key' : 'nothing';
  const source = { schema: message.schema, name: message.name };
  return {
    message,
    display: `${message.schema}.${message.name}`,
    quoted: quoteTable(source),
    targetRef: names.table(source),
    targetColumns: message.columns.map((c) => names.column(source, c.name)),
    mode,
    key,
  };
}

/** Same table, same columns, same replica identity: changes decoded against `a` read the same under `b`. */
export const sameLayout = (a: RelationMessage, b: RelationMessage) =>
  a.schema === b.schema &&
  a.name === b.name &&
  a.replicaIdentity === b.replicaIdentity &&
  a.columns.length === b.columns.length &&
  a.columns.every((c, i) => {
    const d = b.columns[i]!;
    return c.name === d.name && c.typeOid === d.typeOid && c.typeMod === d.typeMod && c.partOfKey === d.partOfKey;
  });

/** The memory a tuple of `rel` holds as a buffered row (the tuple itself); readable errors for a wrong width or a binary value. */
export function bufferedBytes(rel: Relation, tuple: TupleValue[], what: string): number {
  if (tuple.length !== rel.message.columns.length) {
    throw new ApplyError(`pgoutput ${what} for ${rel.display} has ${tuple.length} columns, its Relation message ${rel.message.columns.length}.`);
  }
  try {
    return rowBytes(tuple);
  } catch (error) {
    if (!(error instanceof BinaryColumnError)) throw error;
    throw new ApplyError(
      `pgoutput sent column ${rel.message.columns[error.column]!.name} of ${rel.display} in binary format, which the applier does not accept: start replication without the "binary" option.`,
    );
  }
}

/** The key values of `row` (aligned with rel.key); an unchanged-TOAST key value is taken from `fallback` (the old key). */
export function keyValues(rel: Relation, row: Row, fallback?: Row): (string | null)[] {
  return rel.key.map((k) => {
    const v = row[k]!;
    if (v !== TOAST) return v;
    const f = fallback?.[k];
    if (f === undefined || f === TOAST) throw new ApplyError(`pgoutput sent an unchanged-TOAST key column ${rel.message.columns[k]!.name} for ${rel.display} without its old value.`);
    return f;
  });
}

/** `name=value, …` of some columns, for messages (long values shortened). */
export function describeValues(rel: Relation, cols: number[], values: (string | null)[]): string {
  return cols.map((i, j) => `${rel.message.columns[i]!.name}=${values[j] === null ? 'NULL' : truncateText(values[j]!)}`).join(', ');
}

/**
 * A chunk: the changes buffered since the last one was applied, per table in stream order
 * (tables in order of first appearance), and how one table's part of it is applied: set-wise
 * in a savepoint, or row by row in exact source order when set-wise cannot be exact. Under
 * session_replication_role = replica no trigger or foreign key ties tables together, so
 * per-table order is all that matters.
 */
import { isConflictViolation, type ConflictResolver } from './conflict.js';
import type { Change, Relation } from './relation.js';
import { applyKeyedRow, applyMultisetRow } from './row-by-row.js';
import type { TargetSession } from './session.js';
import { copyInserts, setWiseKeyed, setWiseMultiset } from './set-wise.js';
import { targetTableOf } from './target-table.js';

export interface TablePart {
  changes: Change[];
  insertsOnly: boolean;
}

export class ChunkBuffer {
  parts = new Map<Relation, TablePart>();
  rows = 0;
  /** Approximate memory of the buffered values. */
  bytes = 0;

  add(rel: Relation, change: Change, bytes: number): void {
    let part = this.parts.get(rel);
    if (!part) this.parts.set(rel, (part = { changes: [], insertsOnly: true }));
    part.changes.push(change);
    if (change.op !== 'I') part.insertsOnly = false;
    this.rows++;
    this.bytes += bytes;
  }

  has(rel: Relation): boolean {
    return this.parts.has(rel);
  }

  /** Hands the buffered parts over and starts an empty chunk. */
  take(): Map<Relation, TablePart> {
    const parts = this.parts;
    this.parts = new Map();
    this.rows = 0;
    this.bytes = 0;
    return parts;
  }
}

export interface ChunkCounts {
  /** Per-table parts of chunks applied set-wise. */
  setWiseChunks: number;
  /** Per-table parts of chunks applied row by row (fallback). */
  rowByRowChunks: number;
}

/** One table's part of a chunk, in a savepoint: set-wise, or row by row when that cannot be exact. */
export async function applyTablePart(session: TargetSession, rel: Relation, part: TablePart, conflicts: ConflictResolver, counts: ChunkCounts): Promise<void> {
  const { changes } = part;
  const table = await targetTableOf(session.client, rel);
  const indexJoins = rel.mode === 'key' && table.uniqueKey;
  await session.savepoint(indexJoins);
  let exact: boolean;
  try {
    if (part.insertsOnly && (rel.mode !== 'key' || table.uniqueKey)) exact = await copyInserts(session, rel, table, changes);
    else if (rel.mode === 'key') exact = await setWiseKeyed(session, rel, table, changes);
    else exact = await setWiseMultiset(session, rel, table, changes);
  } catch (error) {
    if (!isConflictViolation(error)) throw error;
    exact = false;
  }
  if (exact) {
    counts.setWiseChunks++;
  } else {
    await session.rollbackToSavepoint(); // also undoes the join settings
    counts.rowByRowChunks++;
    const ctx = { session, rel, table, conflicts };
    for (const change of changes) {
      if (rel.mode === 'key') await applyKeyedRow(ctx, change);
      else await applyMultisetRow(ctx, change);
    }
  }
  await session.releaseSavepoint(exact && indexJoins);
}

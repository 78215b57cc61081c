/**
 * The conflict policy, decided here only. A conflict is an INSERT whose key exists, or an
 * UPDATE/DELETE whose row is missing; only the row-by-row path meets them (the set-wise path
 * detects them by counts and unique/exclusion violations and falls back to row by row).
 *
 * `error` throws ApplyConflictError (and the target transaction is rolled back: nothing of it is
 * committed); `ignore` skips the change; `overwrite` makes the target match the source: INSERT
 * on an existing key updates that row, UPDATE of a missing row inserts the new row when it is
 * fully known (if it carries unchanged-TOAST markers the value exists nowhere but in the missing
 * row, so the change is skipped and counted as ignored), DELETE of a missing row does nothing
 * (counted as overwritten: the target already matches).
 */
import { PgferryError } from '../../errors.js';

export type ConflictPolicy = 'error' | 'ignore' | 'overwrite';

export type ConflictOperation = 'INSERT' | 'UPDATE' | 'DELETE';

/** A change that conflicts with the target's rows under conflictPolicy "error". */
export class ApplyConflictError extends PgferryError {
  constructor(
    message: string,
    readonly details: { table: string; operation: ConflictOperation; key: string; commitLsn: string },
  ) {
    super('pgferry.ApplyConflict', message);
  }
}

export interface ConflictCounts {
  conflictsIgnored: number;
  conflictsOverwritten: number;
}

export interface Conflict {
  /** `schema.table` */
  table: string;
  operation: ConflictOperation;
  /** The row's key (or whole old row) as `name=value, …`. */
  key: string;
  /** Commit LSN of the source transaction. */
  commitLsn: string;
}

/**
 * How `overwrite` makes the target match: a write to run, 'matches' when the target already
 * matches (a DELETE of a missing row), or 'unknown' when the source's row is not fully known.
 */
export type Overwrite = (() => Promise<unknown>) | 'matches' | 'unknown';

const CONFLICT_CODES = new Set(['23505', '23P01']); // unique_violation, exclusion_violation

/** A unique or exclusion violation: on the set-wise path, a conflict (or a row order it cannot keep) to redo row by row. */
export const isConflictViolation = (error: unknown): boolean => CONFLICT_CODES.has((error as { code?: string })?.code ?? '');

export class ConflictResolver {
  constructor(
    readonly policy: ConflictPolicy,
    private readonly counts: ConflictCounts,
  ) {}

  /** Applies the policy to one conflict the row-by-row path met. */
  async resolve(conflict: Conflict, overwrite: Overwrite): Promise<void> {
    if (this.policy === 'error') throw conflictError(conflict);
    if (this.policy === 'ignore' || overwrite === 'unknown') {
      this.counts.conflictsIgnored++;
      return;
    }
    if (overwrite !== 'matches') await overwrite();
    this.counts.conflictsOverwritten++;
  }
}

function conflictError({ table, operation, key, commitLsn }: Conflict): ApplyConflictError {
  const what =
    operation === 'INSERT'
      ? `an INSERT into ${table} found a row with ${key} already on the target`
      : `${operation === 'UPDATE' ? 'an UPDATE' : 'a DELETE'} of ${table} found no row with ${key} on the target`;
  return new ApplyConflictError(
    `Conflict applying the source transaction with commit LSN ${commitLsn}: ${what}. Nothing of the current target transaction was committed. ` +
      'Fix the target row so it matches the source, or set cdc.conflictPolicy to "ignore" (skip such changes) or "overwrite" (make the target row match the source), then restart replication.',
    { table, operation, key, commitLsn },
  );
}

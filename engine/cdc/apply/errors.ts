import { PgferryError } from '../../errors.js';

/** Any failure to apply changes other than a conflict (missing table or column, replica identity, a rejected value). */
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

/**
 * A newer streamer of the migration has started (this one was frozen, or cut off, while the
 * workflow replaced it): this one stops without touching the slot or the target again. It is
 * no error of the migration.
 */
export class StreamerFencedError extends PgferryError {
  constructor(migration: string, mine: number, current: number | undefined) {
    super(
      'pgferry.StreamerFenced',
      `A newer streamer of migration ${migration} has taken over (generation ${current ?? 'none'}, this one ${mine}): this one stops.`,
    );
  }
}

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

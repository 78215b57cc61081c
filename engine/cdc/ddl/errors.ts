import { PgferryError } from '../../errors.js';

/**
 * Replication stopped at a schema change captured on the source: cdc.ddl said to stop, the
 * statement cannot be run as it is, or it failed on the target. The message shows the exact
 * statement and how to go on (`pgferry resume SPEC`).
 */
export class DdlNotAppliedError extends PgferryError {
  constructor(
    message: string,
    /** The change's id in the source's pgferry_capture.ddl_commands. */
    readonly captureId: string,
    readonly statement: string,
    options?: { cause?: unknown },
  ) {
    super('pgferry.DdlNotApplied', message, options);
  }
}

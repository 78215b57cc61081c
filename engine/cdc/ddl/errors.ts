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

/**
 * Replication is to stop at a schema change, but whole source transactions before it are not
 * committed on the target yet (they share the target transaction with the change's own). The
 * replicator resumes from the checkpoint committing each transaction before `commitLsn` on its
 * own, so that it stops with the target holding everything before the change: the user then
 * applies the change to a target in that state.
 */
export class FlushBeforeDdl extends Error {
  constructor(readonly commitLsn: string) {
    super(`stopping at a schema change (its transaction commits at ${commitLsn}): committing what came before it first`);
  }
}

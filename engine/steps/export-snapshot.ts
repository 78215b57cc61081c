/**
 * ExportSnapshot (mode full): exports the snapshot the full load reads, reports it to the
 * workflow, then keeps the transaction open until the migration releases the snapshot (load and
 * comparison done) or ends. If the workflow gave up on the task before it reported (a timeout),
 * it releases the snapshot at once and ends with a TaskGoneError.
 */
import type pg from 'pg';
import { migrationState, recordSnapshot, runHasStopped } from '../control/index.js';
import { isConnectionFailure } from '../connect/index.js';
import { exportSnapshot } from '../snapshot.js';
import { sleep } from '../sql.js';
import { goneError, throwIfGone, type CallbackStepContext } from './task.js';

const POLL_MS = 1000;

export interface SnapshotHoldOptions {
  /** Past this, nobody can still need the snapshot: the load's own time limit (the FullLoad workers' TimeoutSeconds). */
  maxHoldMs: number;
}

export async function exportSnapshotStep(context: CallbackStepContext, { maxHoldMs }: SnapshotHoldOptions): Promise<void> {
  const exported = await exportAndReport(context);
  const { source } = exported;
  let { control } = exported;
  let sourceLost: Error | undefined;
  source.on('error', (error) => (sourceLost = error));
  const heldSince = Date.now();
  let targetLostSince: number | undefined;
  for (;;) {
    await sleep(POLL_MS);
    if (sourceLost) throw new Error(`lost the source connection that holds the snapshot: ${sourceLost.message}`);
    if (Date.now() - heldSince > maxHoldMs) {
      context.log('snapshot held for the longest a load may take; releasing it');
      break;
    }
    let state: Awaited<ReturnType<typeof migrationState>>;
    try {
      state = await migrationState(control, context.migration);
      targetLostSince = undefined;
    } catch (error) {
      // The target is away (a restart, a failover): the snapshot is held on, as the copy workers wait it out too.
      if (!isConnectionFailure(error)) throw error;
      targetLostSince ??= Date.now();
      if (Date.now() - targetLostSince > context.spec.cdc.retryWindowMinutes * 60_000) throw error;
      control = await reconnected(context, control);
      continue;
    }
    if (!state || state.snapshotReleased || runHasStopped(state.phase)) break;
  }
  context.log('snapshot released');
  await source.query('COMMIT').catch(() => undefined);
  await Promise.all([source.end(), control.end()]);
}

/** A new control session in place of a lost one; the old one (ended) while the target cannot be reached yet. */
async function reconnected(context: CallbackStepContext, lost: pg.Client): Promise<pg.Client> {
  await lost.end().catch(() => undefined);
  return context.connectTarget().catch(() => lost);
}

/** Exports the snapshot, records it and reports it; on failure releases it and reports the failure. */
async function exportAndReport({ migration, connectSource, connectTarget, log, callback, gone }: CallbackStepContext) {
  let source: pg.Client | undefined;
  let control: pg.Client | undefined;
  let snapshot: string | undefined;
  try {
    throwIfGone(gone, 'not exporting a snapshot');
    source = await connectSource();
    control = await connectTarget();
    snapshot = await exportSnapshot(source);
    await recordSnapshot(control, migration, snapshot);
    log(`exported snapshot ${snapshot}`);
    await callback.success({ snapshot });
    return { source, control };
  } catch (error) {
    await callback.reportFailure('pgferry.SnapshotFailed', `Cannot export the source snapshot: ${(error as Error).message}`);
    // Nobody will read the snapshot: release it (and the sessions, which would keep the task alive).
    await source?.query('COMMIT').catch(() => undefined);
    await Promise.all([source?.end().catch(() => undefined), control?.end().catch(() => undefined)]);
    if (!gone.aborted) throw error;
    throw goneError(error, gone, snapshot ? `released snapshot ${snapshot}` : 'exported no snapshot');
  }
}

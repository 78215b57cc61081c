/**
 * Holds the full load's snapshot: exports it, reports it to the workflow through the task
 * callback, then keeps the transaction open until the migration releases the snapshot (load
 * and comparison done) or ends. If the workflow gave up on the task before it reported (a
 * timeout), it releases the snapshot at once and exits non-zero.
 */
import type pg from 'pg';
import { exportSnapshot } from '../engine/snapshot.js';
import { migrationState, recordSnapshot } from '../engine/control/index.js';
import { goneError } from '../platform/task-callback.js';
import { runCallbackTask } from './task.js';

const POLL_MS = 1000;
/** The load's own time limit (the FullLoad workers' TimeoutSeconds): past it nobody can still need the snapshot. */
const MAX_HOLD_MS = 172_800_000;

await runCallbackTask('snapshot', async ({ migration, connectSource, connectTarget, log, callback }) => {
  let source: pg.Client | undefined;
  let control: pg.Client | undefined;
  let snapshot: string | undefined;
  try {
    callback.throwIfGone('not exporting a snapshot');
    source = await connectSource();
    control = await connectTarget();
    snapshot = await exportSnapshot(source);
    await recordSnapshot(control, migration, snapshot);
    log(`exported snapshot ${snapshot}`);
    await callback.success({ snapshot });
  } catch (error) {
    await callback.reportFailure('pgferry.SnapshotFailed', `Cannot export the source snapshot: ${(error as Error).message}`);
    // Nobody will read the snapshot: release it (and the sessions, which would keep the task alive).
    await source?.query('COMMIT').catch(() => undefined);
    await Promise.all([source?.end().catch(() => undefined), control?.end().catch(() => undefined)]);
    if (!callback.gone.aborted) throw error;
    throw goneError(error, callback.gone, snapshot ? `released snapshot ${snapshot}` : 'exported no snapshot');
  }
  let sourceLost: Error | undefined;
  source.on('error', (error) => (sourceLost = error));
  const heldSince = Date.now();
  for (;;) {
    await new Promise((r) => setTimeout(r, POLL_MS));
    if (sourceLost) throw new Error(`lost the source connection that holds the snapshot: ${sourceLost.message}`);
    if (Date.now() - heldSince > MAX_HOLD_MS) {
      log('snapshot held for the longest a load may take; releasing it');
      break;
    }
    const state = await migrationState(control, migration);
    if (!state || state.snapshotReleased || state.phase === 'done' || state.phase === 'failed') break;
  }
  log('snapshot released');
  await source.query('COMMIT').catch(() => undefined);
  await Promise.all([source.end(), control.end()]);
});

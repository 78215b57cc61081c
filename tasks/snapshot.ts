/**
 * Holds the full load's snapshot: exports it, reports it to the workflow through the task
 * callback, then keeps the transaction open until the migration releases the snapshot (load
 * and comparison done) or ends.
 */
import { exportSnapshot } from '../engine/snapshot.js';
import { migrationState } from '../engine/control/index.js';
import { runCallbackTask } from './task.js';

const POLL_MS = 1000;
/** The load's own time limit (the FullLoad workers' TimeoutSeconds): past it nobody can still need the snapshot. */
const MAX_HOLD_MS = 172_800_000;

await runCallbackTask('snapshot', async ({ migration, connectSource, connectTarget, log, callback }) => {
  let source;
  let control;
  try {
    source = await connectSource();
    control = await connectTarget();
    const snapshot = await exportSnapshot(source);
    await control.query('UPDATE pgferry.migrations SET snapshot = $2, snapshot_released = false WHERE name = $1', [migration, snapshot]);
    log(`exported snapshot ${snapshot}`);
    await callback.success({ snapshot });
  } catch (error) {
    await callback.failure('pgferry.SnapshotFailed', `Cannot export the source snapshot: ${(error as Error).message}`);
    throw error;
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

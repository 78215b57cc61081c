/**
 * StartReplication (modes full+cdc and cdc): opens the slot with its exported snapshot and
 * reports it (replication-slot.ts), holds the snapshot until the full load no longer needs it,
 * waits for BeginApply, then streams and applies until cutover has drained.
 */
import type pg from 'pg';
import type { SlotHolder } from '../cdc/slot.js';
import { readReplicationStatus } from '../control/index.js';
import { migrationState, runHasStopped } from '../control/index.js';
import { loadNeedsSnapshot } from '../control/index.js';
import { pollUntil } from '../sql.js';
import { streamChanges, streamConfigOf, withReplicationControl, type ReplicationStepOptions } from './replication.js';
import { openSlot } from './replication-slot.js';
import { abandonSlotOverRetainedWal, RetainedWalWatch } from './retained-wal.js';
import type { CallbackStepContext } from './task.js';

const POLL_MS = 500;

export async function startReplicationStep(context: CallbackStepContext, options: ReplicationStepOptions): Promise<void> {
  const streamConfig = await streamConfigOf(context.spec, options.secrets);
  // Stopped by the task (options.signal), or here when the migration ends before it applies anything.
  const stop = new AbortController();
  const signal = AbortSignal.any([options.signal, stop.signal]);
  await withReplicationControl(context, 'stopped', async (control) => {
    const holder = await openSlot(context, control, streamConfig);
    // The slot holds back WAL from its creation on: it is measured while the load and post-data run too.
    const watch = new RetainedWalWatch(context, control, options.onRetainedWal, options.retainedWalIntervalMs);
    try {
      if (holder) await holdSnapshotForLoad(context, control, holder, signal, watch);
      if (!(await applyRequested(context, control, signal, watch))) stop.abort();
    } catch (error) {
      await abandonSlotOverRetainedWal(context, error);
    }
    await streamChanges(context, streamConfig, { ...options, signal });
  });
}

/** The full load imports the snapshot; keep it until every unit is copied (a failed unit is redone on it). */
async function holdSnapshotForLoad({ migration, spec, log }: CallbackStepContext, control: pg.Client, holder: SlotHolder, signal: AbortSignal, watch: RetainedWalWatch) {
  try {
    if (spec.mode !== 'cdc') {
      await pollUntil(
        async () => {
          await watch.maybeCheck();
          return (await loadNeedsSnapshot(control, migration)) ? undefined : true;
        },
        { intervalMs: POLL_MS, signal },
      );
    }
  } finally {
    await holder.release();
    log('snapshot released');
  }
}

/** Waits until BeginApply asks for apply (post-data has built the keys); false when the migration ended or paused first, or `signal` stopped the task. */
export async function applyRequested({ migration }: CallbackStepContext, control: pg.Client, signal: AbortSignal, watch?: RetainedWalWatch): Promise<boolean> {
  const answer = await pollUntil(
    async () => {
      await watch?.maybeCheck();
      if ((await readReplicationStatus(control, migration))?.applyRequested) return true;
      const state = await migrationState(control, migration);
      return !state || runHasStopped(state.phase) ? false : undefined;
    },
    { intervalMs: POLL_MS, signal },
  );
  return answer === true;
}

/** The ExportSnapshot task (mode full): engine/steps/export-snapshot.ts. */
import { exportSnapshotStep } from '../engine/steps/export-snapshot.js';
import { runCallbackTask } from './task.js';

/**
 * The FullLoad workers' TimeoutSeconds, which the workflow passes as
 * PGFERRY_SNAPSHOT_MAX_HOLD_SECONDS; a workflow definition from before that variable does not,
 * and its limit was this.
 */
const DEFAULT_MAX_HOLD_SECONDS = 172_800;

function maxHoldSeconds(env: NodeJS.ProcessEnv): number {
  const value = env.PGFERRY_SNAPSHOT_MAX_HOLD_SECONDS;
  if (value === undefined || value === '') return DEFAULT_MAX_HOLD_SECONDS;
  const seconds = Number(value);
  if (!Number.isFinite(seconds) || seconds <= 0) throw new Error(`PGFERRY_SNAPSHOT_MAX_HOLD_SECONDS is not a number of seconds: "${value}".`);
  return seconds;
}

await runCallbackTask('snapshot', (context) => exportSnapshotStep(context, { maxHoldMs: maxHoldSeconds(context.env) * 1000 }));

/** The ExportSnapshot task (mode full): engine/steps/export-snapshot.ts. */
import { exportSnapshotStep } from '../engine/steps/export-snapshot.js';
import { runCallbackTask } from './task.js';

/** The load's own time limit (the FullLoad workers' TimeoutSeconds): past it nobody can still need the snapshot. */
const MAX_HOLD_MS = 172_800_000;

await runCallbackTask('snapshot', (context) => exportSnapshotStep(context, { maxHoldMs: MAX_HOLD_MS }));

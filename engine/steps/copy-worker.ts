/**
 * CopyWorker (one per item of the FullLoad map): takes pending work units until none is left,
 * reading the source at the load's snapshot, with its share of the load's limits among the copy
 * workers running (engine/flow/: the spec's, or what pgferry throttle set since).
 */
import { runCopyWorker, type CopiedUnit, type WorkerSummary } from '../load/worker.js';
import type { TaskStepContext } from './task.js';

export interface CopyWorkerOptions {
  /** The snapshot the load reads (ExportSnapshot's or StartReplication's). */
  snapshot: string;
  /** Told when a unit is done (metrics). */
  onUnit?: (unit: CopiedUnit) => void;
}

export async function copyWorkerStep(context: TaskStepContext, { snapshot, onUnit }: CopyWorkerOptions): Promise<WorkerSummary> {
  const { migration, spec, connectSource, connectTarget, log } = context;
  return runCopyWorker({
    migration,
    snapshot,
    maxAttempts: spec.fullLoad.retries + 1,
    // Always on, with or without limits in the spec: pgferry throttle may set one while the load runs.
    flow: { rowsPerSecond: spec.fullLoad.maxRowsPerSecond, bytesPerSecond: spec.fullLoad.maxBytesPerSecond },
    connectSource,
    connectTarget,
    log,
    onUnit,
  });
}

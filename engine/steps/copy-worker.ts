/**
 * CopyWorker (one per item of the FullLoad map): takes pending work units until none is left,
 * reading the source at the load's snapshot, with its share of the load's rate limit.
 */
import { loadTotals } from '../control/index.js';
import { runCopyWorker, type CopiedUnit, type WorkerSummary } from '../load/worker.js';
import { copyWorkerCount } from './plan-full-load.js';
import type { TaskStepContext } from './task.js';

/**
 * One worker's share of `fullLoad.maxBytesPerSecond` (undefined: no limit): the limit split
 * evenly over the copy workers that actually run, min(parallelism, units), as PlanFullLoad
 * started them; dividing by `parallelism` alone would throttle a load with fewer units than
 * that harder than asked.
 */
export function workerRateShare(maxBytesPerSecond: number | undefined, parallelism: number, units: number): number | undefined {
  return maxBytesPerSecond && maxBytesPerSecond / copyWorkerCount(parallelism, units);
}

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
    maxBytesPerSecond: await copyWorkerRateShare(context),
    connectSource,
    connectTarget,
    log,
    onUnit,
  });
}

/** This worker's share of the rate limit, from the plan in the control schema (read only when there is a limit). */
export async function copyWorkerRateShare({ migration, spec, connectTarget }: Pick<TaskStepContext, 'migration' | 'spec' | 'connectTarget'>): Promise<number | undefined> {
  const { maxBytesPerSecond, parallelism } = spec.fullLoad;
  if (!maxBytesPerSecond) return maxBytesPerSecond;
  const control = await connectTarget();
  control.on('error', () => undefined);
  try {
    return workerRateShare(maxBytesPerSecond, parallelism, (await loadTotals(control, migration)).units);
  } finally {
    await control.end();
  }
}

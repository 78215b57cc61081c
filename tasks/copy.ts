/** A CopyWorker task of the FullLoad map: engine/steps/copy-worker.ts. */
import { copyWorkerStep } from '../engine/steps/copy-worker.js';
import { copyMetrics } from '../platform/observability.js';
import { requiredEnv, runTask } from './task.js';

// A unit is one target transaction: a worker that lost a side is run again, and redoes only what was not committed.
await runTask('copy', async (context) => {
  const { env, metrics, log } = context;
  const summary = await copyWorkerStep(context, { snapshot: requiredEnv(env, 'PGFERRY_SNAPSHOT'), onUnit: metrics && copyMetrics(metrics) });
  log(`worker ${env.PGFERRY_WORKER ?? ''} done: ${summary.units} units, ${summary.rows} rows, ${summary.bytes} bytes`);
}, undefined, { redoOnOutage: true });

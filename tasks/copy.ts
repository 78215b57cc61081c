/** A full-load copy worker: takes pending work units until none is left. */
import { runCopyWorker } from '../engine/load/worker.js';
import { copyMetrics } from '../platform/observability.js';
import { requiredEnv, runTask } from './task.js';

await runTask('copy', async ({ migration, spec, env, connectSource, connectTarget, log, metrics }) => {
  const summary = await runCopyWorker({
    migration,
    snapshot: requiredEnv(env, 'PGFERRY_SNAPSHOT'),
    maxAttempts: spec.fullLoad.retries + 1,
    maxBytesPerSecond: spec.fullLoad.maxBytesPerSecond && spec.fullLoad.maxBytesPerSecond / spec.fullLoad.parallelism,
    connectSource,
    connectTarget,
    log,
    onUnit: metrics && copyMetrics(metrics),
  });
  log(`worker ${env.PGFERRY_WORKER ?? ''} done: ${summary.units} units, ${summary.rows} rows, ${summary.bytes} bytes`);
});

/**
 * A CopyWorker task of the FullLoad map (engine/steps/copy-worker.ts), or, with
 * PGFERRY_RESYNC=1, the ResyncTables state of a resumed full+cdc run (engine/steps/resync-tables.ts).
 */
import { copyWorkerStep } from '../engine/steps/copy-worker.js';
import { resyncTablesStep } from '../engine/steps/resync-tables.js';
import { copyMetrics } from '../platform/observability.js';
import { DefaultSecretsProvider } from '../platform/secrets/index.js';
import { requiredEnv, runTask } from './task.js';

// A unit (and a resync) is one target transaction: a task that lost a side is run again, and redoes only what was not committed.
await runTask('copy', async (context) => {
  const { env, metrics, log } = context;
  if (env.PGFERRY_RESYNC === '1') {
    await resyncTablesStep(context, { secrets: new DefaultSecretsProvider(env) });
    return;
  }
  const summary = await copyWorkerStep(context, { snapshot: requiredEnv(env, 'PGFERRY_SNAPSHOT'), onUnit: metrics && copyMetrics(metrics) });
  log(`worker ${env.PGFERRY_WORKER ?? ''} done: ${summary.units} units, ${summary.rows} rows, ${summary.bytes} bytes`);
}, undefined, { redoOnOutage: true });

/**
 * The CDC task: StartReplication (engine/steps/start-replication.ts), or ResumeReplication
 * (PGFERRY_RESUME=1, engine/steps/resume-replication.ts), or ReverseReplication after a cutover
 * with cutover.reverse (PGFERRY_REVERSE=1, engine/steps/reverse-replication.ts). SIGTERM and SIGINT stop streaming,
 * and the process ends within EXIT_GRACE_MS whatever it still holds.
 */
import { resumeReplicationStep } from '../engine/steps/resume-replication.js';
import { startReplicationStep } from '../engine/steps/start-replication.js';
import { reverseReplicationStep } from '../engine/steps/reverse-replication.js';
import { replicationMetrics, retainedWalMetrics } from '../platform/observability.js';
import { DefaultSecretsProvider } from '../platform/secrets/index.js';
import { exitSoon, runCallbackTask } from './task.js';

await runCallbackTask('replicate', async (context) => {
  const { spec, env, metrics } = context;
  const stop = new AbortController();
  const stopAndExit = () => {
    stop.abort();
    exitSoon();
  };
  for (const signal of ['SIGTERM', 'SIGINT'] as const) process.once(signal, stopAndExit);
  const step = env.PGFERRY_REVERSE === '1' ? reverseReplicationStep : env.PGFERRY_RESUME === '1' ? resumeReplicationStep : startReplicationStep;
  await step(context, {
    signal: stop.signal,
    secrets: new DefaultSecretsProvider(env),
    onHeartbeat: metrics && replicationMetrics(metrics, { lagThresholdSeconds: spec.alerts.lagThresholdSeconds }),
    onRetainedWal: metrics && retainedWalMetrics(metrics),
  });
});

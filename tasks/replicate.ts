/**
 * The CDC task: StartReplication (engine/steps/start-replication.ts), or ResumeReplication
 * (PGFERRY_RESUME=1, engine/steps/resume-replication.ts). SIGTERM and SIGINT stop streaming.
 */
import { resumeReplicationStep } from '../engine/steps/resume-replication.js';
import { startReplicationStep } from '../engine/steps/start-replication.js';
import { replicationMetrics } from '../platform/observability.js';
import { DefaultSecretsProvider } from '../platform/secrets/index.js';
import { runCallbackTask } from './task.js';

await runCallbackTask('replicate', async (context) => {
  const { spec, env, metrics } = context;
  const stop = new AbortController();
  for (const signal of ['SIGTERM', 'SIGINT'] as const) process.once(signal, () => stop.abort());
  const step = env.PGFERRY_RESUME === '1' ? resumeReplicationStep : startReplicationStep;
  await step(context, {
    signal: stop.signal,
    secrets: new DefaultSecretsProvider(env),
    onHeartbeat: metrics && replicationMetrics(metrics, { lagThresholdSeconds: spec.alerts.lagThresholdSeconds }),
  });
});

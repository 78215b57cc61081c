import { z } from 'zod';
import { pausedStatusStep } from '../engine/steps/paused-status.js';
import { metrics } from '../platform/aws/deployment.js';
import { metricsSinkFromEnvironment, retainedWalMetrics } from '../platform/observability.js';
import { lambdaHandler, specEvent, specMigration, specSecrets } from './handler.js';

/** Time kept back from the function's timeout to answer after the last look. */
const MARGIN_MS = 15_000;

export const handler = lambdaHandler({
  name: 'PausedStatus',
  input: specEvent.extend({ execution: z.string(), waitUpToSeconds: z.number().min(0).max(840).default(0) }),
  secrets: specSecrets,
  migration: specMigration,
  handler: ({ spec, execution, waitUpToSeconds }, { secrets, context }) => {
    const remainingMs = typeof context?.getRemainingTimeInMillis === 'function' ? context.getRemainingTimeInMillis() - MARGIN_MS : Infinity;
    const sink = metricsSinkFromEnvironment(spec.name);
    // While paused the alarm stays on; it clears once the run is resumed or abandoned (no more data points).
    sink?.publish([{ name: metrics.names.migrationPaused, unit: 'Count', value: 1 }]);
    return pausedStatusStep(spec, secrets, {
      execution,
      waitUpToSeconds: Math.max(0, Math.min(waitUpToSeconds, remainingMs / 1000)),
      ...(sink ? { onRetainedWal: retainedWalMetrics(sink) } : {}),
    });
  },
});

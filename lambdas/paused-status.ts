import { z } from 'zod';
import { pausedStatusStep } from '../engine/steps/paused-status.js';
import { metrics } from '../platform/aws/deployment.js';
import { alertSinkFromEnvironment } from '../platform/alerts.js';
import { metricsSinkFromEnvironment, retainedWalMetrics } from '../platform/observability.js';
import { lambdaHandler, specEvent, specMigration, specSecrets, waitBudgetSeconds, waitUpToSecondsInput } from './handler.js';

export const handler = lambdaHandler({
  name: 'PausedStatus',
  input: specEvent.extend({ execution: z.string(), waitUpToSeconds: waitUpToSecondsInput }),
  secrets: specSecrets,
  migration: specMigration,
  handler: ({ spec, execution, waitUpToSeconds }, { secrets, context }) => {
    const sink = metricsSinkFromEnvironment(spec.name);
    // While paused the alarm stays on; it clears once the run is resumed or abandoned (no more data points).
    sink?.publish([{ name: metrics.names.migrationPaused, unit: 'Count', value: 1 }]);
    return pausedStatusStep(spec, secrets, {
      execution,
      waitUpToSeconds: waitBudgetSeconds(waitUpToSeconds, context),
      ...(sink ? { onRetainedWal: retainedWalMetrics(sink) } : {}),
      alertSink: alertSinkFromEnvironment(),
    });
  },
});

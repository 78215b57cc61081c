import { fallbackStep } from '../engine/steps/after-cutover.js';
import { metrics } from '../platform/aws/deployment.js';
import { metricsSinkFromEnvironment } from '../platform/observability.js';
import { lambdaHandler, specEvent, specMigration, switchingSpecSecrets, writableSecrets } from './handler.js';

export const handler = lambdaHandler({
  name: 'Fallback',
  input: specEvent,
  secrets: switchingSpecSecrets,
  migration: specMigration,
  handler: async ({ spec }, { secrets }) => {
    const result = await fallbackStep(spec, writableSecrets(secrets));
    if (result.windowSeconds !== null) {
      metricsSinkFromEnvironment(spec.name)?.publish([{ name: metrics.names.fallbackWriteUnavailableSeconds, unit: 'Seconds', value: result.windowSeconds }]);
    }
    return result;
  },
});

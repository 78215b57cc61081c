import { finishMigrationStep } from '../engine/steps/finish-migration.js';
import { metrics } from '../platform/aws/deployment.js';
import { metricsSinkFromEnvironment } from '../platform/observability.js';
import { lambdaHandler, specEvent, specMigration, switchingSpecSecrets, writableSecrets } from './handler.js';

export const handler = lambdaHandler({
  name: 'FinishMigration',
  input: specEvent,
  secrets: switchingSpecSecrets,
  migration: specMigration,
  handler: async ({ spec }, { secrets }) => {
    const result = await finishMigrationStep(spec, writableSecrets(secrets));
    if (result.writeUnavailableSeconds !== null) {
      metricsSinkFromEnvironment(spec.name)?.publish([{ name: metrics.names.writeUnavailableSeconds, unit: 'Seconds', value: result.writeUnavailableSeconds }]);
    }
    return result;
  },
});

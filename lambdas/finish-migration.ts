import { finishMigrationStep } from '../engine/migration.js';
import { lambdaHandler, specEvent, specMigration, specSecrets } from './handler.js';

export const handler = lambdaHandler({
  name: 'FinishMigration',
  input: specEvent,
  secrets: specSecrets,
  migration: specMigration,
  handler: ({ spec }, { secrets }) => finishMigrationStep(spec, secrets),
});

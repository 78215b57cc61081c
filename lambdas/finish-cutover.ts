import { finishCutoverStep } from '../engine/migration.js';
import { lambdaHandler, specEvent, specMigration, specSecrets } from './handler.js';

export const handler = lambdaHandler({
  name: 'FinishCutover',
  input: specEvent,
  secrets: specSecrets,
  migration: specMigration,
  handler: ({ spec }, { secrets }) => finishCutoverStep(spec, secrets),
});

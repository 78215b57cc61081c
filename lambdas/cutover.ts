import { cutoverStep } from '../engine/migration.js';
import { lambdaHandler, specEvent, specMigration, specSecrets } from './handler.js';

export const handler = lambdaHandler({
  name: 'Cutover',
  input: specEvent,
  secrets: specSecrets,
  migration: specMigration,
  handler: ({ spec }, { secrets }) => cutoverStep(spec, secrets),
});

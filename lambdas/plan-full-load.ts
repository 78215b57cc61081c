import { planFullLoadStep } from '../engine/migration.js';
import { lambdaHandler, specEvent, specMigration, specSecrets } from './handler.js';

export const handler = lambdaHandler({
  name: 'PlanFullLoad',
  input: specEvent,
  secrets: specSecrets,
  migration: specMigration,
  handler: ({ spec }, { secrets }) => planFullLoadStep(spec, secrets),
});

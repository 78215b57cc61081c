import { beginApplyStep } from '../engine/migration.js';
import { lambdaHandler, specEvent, specMigration, specSecrets } from './handler.js';

export const handler = lambdaHandler({
  name: 'BeginApply',
  input: specEvent,
  secrets: specSecrets,
  migration: specMigration,
  handler: ({ spec }, { secrets }) => beginApplyStep(spec, secrets),
});

import { planResumeStep } from '../engine/steps/plan-resume.js';
import { lambdaHandler, specEvent, specMigration, specSecrets } from './handler.js';

export const handler = lambdaHandler({
  name: 'PlanResume',
  input: specEvent,
  secrets: specSecrets,
  migration: specMigration,
  handler: ({ spec }, { secrets }) => planResumeStep(spec, secrets),
});

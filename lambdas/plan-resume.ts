import { z } from 'zod';
import { planResumeStep } from '../engine/steps/plan-resume.js';
import { lambdaHandler, specEvent, specMigration, specSecrets } from './handler.js';

export const handler = lambdaHandler({
  name: 'PlanResume',
  input: specEvent.extend({ continues: z.string().nullish() }),
  secrets: specSecrets,
  migration: specMigration,
  handler: ({ spec, continues }, { secrets }) => planResumeStep(spec, secrets, { continues }),
});

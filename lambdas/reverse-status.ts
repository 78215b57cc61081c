import { reverseStatusStep } from '../engine/steps/after-cutover.js';
import { lambdaHandler, specEvent, specMigration, specSecrets, waitBudgetSeconds, waitUpToSecondsInput } from './handler.js';

export const handler = lambdaHandler({
  name: 'ReverseStatus',
  input: specEvent.extend({ waitUpToSeconds: waitUpToSecondsInput }),
  secrets: specSecrets,
  migration: specMigration,
  handler: ({ spec, waitUpToSeconds }, { secrets, context }) => reverseStatusStep(spec, secrets, { waitUpToSeconds: waitBudgetSeconds(waitUpToSeconds, context) }),
});

import { z } from 'zod';
import { describeFailure } from '../platform/aws/step-functions-failure.js';
import { lambdaHandler } from './handler.js';

/** What a Catch puts in ResultPath. Tolerant: describing a failure must not fail itself. */
const caughtError = z.object({ Error: z.string().nullish(), Cause: z.string().nullish() });

export const handler = lambdaHandler({
  name: 'DescribeFailure',
  input: z.object({ error: caughtError.nullish() }),
  handler: async ({ error }) => describeFailure({ Error: error?.Error ?? undefined, Cause: error?.Cause ?? undefined }),
});

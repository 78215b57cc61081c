import { z } from 'zod';
import { validateSpecStep } from '../engine/steps/validate-spec.js';
import { allowedAlertTopicsFromEnvironment } from '../platform/alerts.js';
import { lambdaHandler } from './handler.js';

export const handler = lambdaHandler({
  name: 'ValidateSpec',
  // The spec as a person wrote it: its problems, and what has not landed yet, are a SpecInvalid error of their own.
  input: z.object({ spec: z.unknown() }),
  migration: ({ spec }) => {
    const run = spec as { name?: unknown; spec?: { name?: unknown } } | null;
    const name = run?.name ?? run?.spec?.name;
    return typeof name === 'string' ? name.slice(0, 64) : undefined;
  },
  handler: ({ spec }) => validateSpecStep(spec, { allowedAlertTopics: allowedAlertTopicsFromEnvironment() }),
});

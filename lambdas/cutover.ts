import { cutoverStep } from '../engine/migration.js';
import { parseNormalizedSpec } from '../engine/spec/index.js';
import { DefaultSecretsProvider } from '../platform/secrets/index.js';
import { lambdaHandler } from './handler.js';

const secrets = new DefaultSecretsProvider();

export const handler = lambdaHandler(async (event: { spec: unknown }) => cutoverStep(parseNormalizedSpec(event.spec), secrets));

import { replicationStatusStep } from '../engine/migration.js';
import { parseNormalizedSpec } from '../engine/spec/index.js';
import { DefaultSecretsProvider } from '../platform/secrets/index.js';
import { lambdaHandler } from './handler.js';

const secrets = new DefaultSecretsProvider();

export const handler = lambdaHandler(async (event: { spec: unknown }) => replicationStatusStep(parseNormalizedSpec(event.spec), secrets));

import { parseSpec } from '../engine/spec/index.js';
import { lambdaHandler } from './handler.js';

export const handler = lambdaHandler(async (event: { spec: unknown }) => ({ spec: parseSpec(event.spec) }));

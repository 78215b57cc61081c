import { describeFailure, type CaughtError } from '../engine/failure.js';
import { lambdaHandler } from './handler.js';

export const handler = lambdaHandler(async (event: { error: CaughtError }) => describeFailure(event.error));

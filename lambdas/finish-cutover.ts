import { finishCutoverStep } from '../engine/steps/finish-cutover.js';
import { specStepHandler } from './handler.js';

export const handler = specStepHandler('FinishCutover', finishCutoverStep);

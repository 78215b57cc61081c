import { finishAfterCutoverStep } from '../engine/steps/after-cutover.js';
import { specStepHandler } from './handler.js';

export const handler = specStepHandler('FinishAfterCutover', (spec, secrets) => finishAfterCutoverStep(spec, secrets));

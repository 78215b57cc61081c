import { finishCutoverStep } from '../engine/migration.js';
import { specStepHandler } from './handler.js';

export const handler = specStepHandler('FinishCutover', finishCutoverStep);

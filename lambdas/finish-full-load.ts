import { finishFullLoadStep } from '../engine/steps/finish-full-load.js';
import { specStepHandler } from './handler.js';

export const handler = specStepHandler('FinishFullLoad', finishFullLoadStep);

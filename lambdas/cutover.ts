import { cutoverStep } from '../engine/steps/cutover.js';
import { specStepHandler } from './handler.js';

export const handler = specStepHandler('Cutover', cutoverStep);

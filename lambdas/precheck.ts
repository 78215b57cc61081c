import { precheckStep } from '../engine/steps/precheck.js';
import { specStepHandler } from './handler.js';

export const handler = specStepHandler('Precheck', precheckStep);

import { cutoverStep } from '../engine/migration.js';
import { specStepHandler } from './handler.js';

export const handler = specStepHandler('Cutover', cutoverStep);

import { beginApplyStep } from '../engine/migration.js';
import { specStepHandler } from './handler.js';

export const handler = specStepHandler('BeginApply', beginApplyStep);

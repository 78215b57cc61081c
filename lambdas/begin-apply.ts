import { beginApplyStep } from '../engine/steps/begin-apply.js';
import { specStepHandler } from './handler.js';

export const handler = specStepHandler('BeginApply', beginApplyStep);

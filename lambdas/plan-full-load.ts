import { planFullLoadStep } from '../engine/steps/plan-full-load.js';
import { specStepHandler } from './handler.js';

export const handler = specStepHandler('PlanFullLoad', planFullLoadStep);

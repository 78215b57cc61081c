import { planFullLoadStep } from '../engine/migration.js';
import { specStepHandler } from './handler.js';

export const handler = specStepHandler('PlanFullLoad', planFullLoadStep);

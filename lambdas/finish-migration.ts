import { finishMigrationStep } from '../engine/steps/finish-migration.js';
import { specStepHandler } from './handler.js';

export const handler = specStepHandler('FinishMigration', finishMigrationStep);

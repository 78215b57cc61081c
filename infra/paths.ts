/**
 * Where PgferryMigration finds the repository: the Lambdas' entries, the task image's build
 * context (the Dockerfile) and the workflow definition.
 */
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

export const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), '..');

/** The checked-in workflow, generated from state-machines/definition.ts (`npm run asl`). */
export const migrationDefinitionPath = join(repoRoot, 'state-machines', 'migration.asl.json');

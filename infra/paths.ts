/**
 * Where PgferryMigration finds the repository: the Lambdas' entries, the task image's build
 * context (the Dockerfile) and the workflow definition.
 */
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

export const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), '..');

export { workflowFile as migrationDefinitionPath } from '../state-machines/file.js';

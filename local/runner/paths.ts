/** Where the local runner finds the repository's files. */
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** This file is local/runner/paths.ts: the repository is two folders up. */
export const repositoryRoot = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
export { workflowFile } from '../../state-machines/file.js';

/**
 * The layout of the pgferry task image (Dockerfile at the repository root): every entry of
 * tasks/registry.ts is bundled to `dist/tasks/<entry file name>.mjs`, and the image's
 * ENTRYPOINT is `node`, so a task definition picks its entry with the command
 * `["dist/tasks/<name>.mjs"]`. Paths only, shared by the CDK construct and bundle-tasks.ts.
 */
import { posix } from 'node:path';
import type { FargateTaskDefinition } from '../tasks/registry.js';

/** Directory of the task bundles, relative to the image's working directory. */
export const taskBundleDir = 'dist/tasks';

/** Base name of a task's bundle: `tasks/post-data.ts` → `post-data`. */
export function taskBundleName(task: Pick<FargateTaskDefinition, 'entry'>): string {
  return posix.basename(task.entry).replace(/\.[cm]?ts$/, '');
}

/** The bundle a task's container runs, relative to the image's working directory. */
export function taskBundlePath(task: Pick<FargateTaskDefinition, 'entry'>): string {
  return `${taskBundleDir}/${taskBundleName(task)}.mjs`;
}

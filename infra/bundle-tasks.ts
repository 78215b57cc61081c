/**
 * Bundles every entry of tasks/registry.ts into one self-contained ESM file,
 * `<outdir>/<name>.mjs` (+ source map): the Dockerfile's build stage runs
 * `npx tsx infra/bundle-tasks.ts dist/tasks`. The AWS SDK is bundled too, so the image needs
 * no node_modules at all. The settings are the deployed recipe of infra/esbuild-recipe.ts, as for the Lambdas.
 */
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as esbuild from 'esbuild';
import { fargateTasks } from '../tasks/registry.js';
import { deployedBundleOptions } from './esbuild-recipe.js';
import { taskBundleDir, taskBundleName } from './task-image.js';

const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), '..');

/** Writes the bundles and returns their paths. */
export async function bundleTasks(outdir: string, root: string = repoRoot): Promise<string[]> {
  const entryPoints = Object.fromEntries(fargateTasks.map((task) => [taskBundleName(task), join(root, task.entry)]));
  await esbuild.build({
    absWorkingDir: root,
    entryPoints,
    outdir: resolve(root, outdir),
    outExtension: { '.js': '.mjs' },
    ...deployedBundleOptions,
    mainFields: [...deployedBundleOptions.mainFields],
  });
  return Object.keys(entryPoints).map((name) => join(resolve(root, outdir), `${name}.mjs`));
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const outdir = process.argv[2] ?? taskBundleDir;
  for (const bundle of await bundleTasks(outdir)) console.log(bundle);
}

/**
 * Bundles every entry of tasks/registry.ts into one self-contained ESM file,
 * `<outdir>/<name>.mjs` (+ source map): the Dockerfile's build stage runs
 * `npx tsx infra/bundle-tasks.ts dist/tasks`. The AWS SDK is bundled too, so the image needs
 * no node_modules at all. Same esbuild settings as the Lambdas (infra/pgferry-migration.ts).
 */
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as esbuild from 'esbuild';
import { fargateTasks } from '../tasks/registry.js';
import { taskBundleDir, taskBundleName } from './task-image.js';

const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), '..');

/** esbuild's ESM output has no `require` for the CommonJS dependencies it bundles. */
export const requireBanner = "import { createRequire } from 'module'; const require = createRequire(import.meta.url);";

/** Writes the bundles and returns their paths. */
export async function bundleTasks(outdir: string, root: string = repoRoot): Promise<string[]> {
  const entryPoints = Object.fromEntries(fargateTasks.map((task) => [taskBundleName(task), join(root, task.entry)]));
  await esbuild.build({
    absWorkingDir: root,
    entryPoints,
    outdir: resolve(root, outdir),
    outExtension: { '.js': '.mjs' },
    bundle: true,
    platform: 'node',
    format: 'esm',
    target: 'node22',
    mainFields: ['module', 'main'],
    minify: true,
    // Node applies the maps with --enable-source-maps (set in the image); names and lines
    // are enough for stack traces, the sources themselves stay out of the image.
    sourcemap: true,
    sourcesContent: false,
    banner: { js: requireBanner },
    logLevel: 'warning',
  });
  return Object.keys(entryPoints).map((name) => join(resolve(root, outdir), `${name}.mjs`));
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const outdir = process.argv[2] ?? taskBundleDir;
  for (const bundle of await bundleTasks(outdir)) console.log(bundle);
}

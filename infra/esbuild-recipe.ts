/**
 * The one esbuild recipe of the project. Deployed code (the task image's bundles and the
 * Lambdas) is self-contained, minified ESM for Node 22; the local runner's task bundles keep
 * their packages in node_modules and target the Node that runs them. Data only: no esbuild or
 * CDK import, so the local runner, the Dockerfile's build stage and the CDK app all read it.
 */

/** esbuild's ESM output has no `require` for the CommonJS dependencies it bundles. */
export const REQUIRE_BANNER = "import { createRequire } from 'module'; const require = createRequire(import.meta.url);";

/** The Node.js major the deployed code runs on (Lambda runtime and task image), as an esbuild target. */
export const DEPLOYED_NODE_TARGET = 'node22';

const common = {
  bundle: true,
  platform: 'node',
  format: 'esm',
} as const;

/** Deployed bundles: everything inside, minified, external source maps without the sources. */
export const deployedBundleOptions = {
  ...common,
  target: DEPLOYED_NODE_TARGET,
  mainFields: ['module', 'main'],
  minify: true,
  // Node applies the maps with --enable-source-maps (set in the image and the Lambdas); names
  // and lines are enough for stack traces, the sources themselves stay out of the artifacts.
  sourcemap: true,
  sourcesContent: false,
  banner: { js: REQUIRE_BANNER },
  logLevel: 'warning',
} as const;

/** Local task bundles: packages stay in node_modules (loaded ahead by warm processes), inline maps. */
export const localBundleOptions = {
  ...common,
  packages: 'external',
  target: `node${process.versions.node.split('.')[0]}`,
  sourcemap: 'inline',
  metafile: true,
  logLevel: 'silent',
} as const;

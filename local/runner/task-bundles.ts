/**
 * Task bundles: each task's entry bundled with esbuild (dependencies stay in node_modules), so a
 * task process starts as plain Node instead of compiling TypeScript on every start — as the
 * container runs its prebuilt bundle. The build options are the project's one recipe,
 * `localBundleOptions` of infra/esbuild-recipe.ts.
 */
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, renameSync, statSync, writeFileSync, type Stats } from 'node:fs';
import { dirname, join } from 'node:path';
import { localBundleOptions } from '../../infra/esbuild-recipe.js';
import type { FargateTaskDefinition } from '../../tasks/registry.js';
import { repositoryRoot } from './paths.js';

export interface TaskBundle {
  script: string;
  /** Packages the bundle imports statically: what a warm process loads ahead. */
  packages: string[];
}

/** Where bundles, their records and the warm loader live. */
export const bundleDir = join(repositoryRoot, 'node_modules', '.cache', 'pgferry');

/** The build options and esbuild's version, as a record keeps them. */
const bundleRecipe = (version: string) => JSON.stringify({ esbuild: version, ...localBundleOptions });

/** The installed esbuild's version, read without loading esbuild. */
function esbuildVersion(): string {
  return (JSON.parse(readFileSync(join(repositoryRoot, 'node_modules', 'esbuild', 'package.json'), 'utf8')) as { version: string }).version;
}

/** What a task's last bundle was built from: the recipe, and each input file's modification time and size. */
interface BundleRecord extends TaskBundle {
  options: string;
  inputs: Record<string, string>;
}

/** A short name for content: content-named files are shared by runs of the same code. */
export const digest = (content: Uint8Array | string) => createHash('sha256').update(content).digest('hex').slice(0, 16);
const bundleRecordFile = (task: FargateTaskDefinition) => join(bundleDir, `${task.name}-${digest(task.entry)}.bundle.json`);
const statInput = (path: string) => statSync(join(repositoryRoot, path), { throwIfNoEntry: false });
const inputStamp = (stat: Stats | undefined) => (stat ? `${stat.mtimeMs}:${stat.size}` : 'missing');

/** The task's last bundle, if none of the files it was built from has changed since. */
function unchangedBundle(task: FargateTaskDefinition): TaskBundle | undefined {
  try {
    const record = JSON.parse(readFileSync(bundleRecordFile(task), 'utf8')) as BundleRecord;
    if (record.options !== bundleRecipe(esbuildVersion()) || !existsSync(record.script)) return undefined;
    if (Object.entries(record.inputs).some(([path, stamp]) => inputStamp(statInput(path)) !== stamp)) return undefined;
    return { script: record.script, packages: record.packages };
  } catch {
    return undefined;
  }
}

/**
 * A task's bundle. The file is named by its content: runs of the same code share it, and a run
 * killed before it could clean up leaves nothing new behind. A bundle whose input files are
 * unchanged is used as it is, so a run's first task process need not wait for esbuild.
 */
async function taskBundle(task: FargateTaskDefinition): Promise<TaskBundle> {
  return unchangedBundle(task) ?? buildTaskBundle(task);
}

/** Files besides the sources that decide what a bundle holds. */
const BUNDLE_CONFIG_FILES = ['tsconfig.json', 'package.json'];

async function buildTaskBundle(task: FargateTaskDefinition): Promise<TaskBundle> {
  const esbuild = await import('esbuild');
  const startedAt = Date.now();
  const { outputFiles, metafile } = await esbuild.build({
    absWorkingDir: repositoryRoot,
    entryPoints: [join(repositoryRoot, task.entry)],
    outfile: join(bundleDir, `${task.name}.mjs`),
    write: false,
    ...localBundleOptions,
  });
  const code = outputFiles[0]!.contents;
  const script = join(bundleDir, `${task.name}-${digest(code)}.mjs`);
  writeOnce(script, code);
  const imports = Object.values(metafile.outputs).flatMap((output) => output.imports);
  const packages = [...new Set(imports.filter((i) => i.external && i.kind === 'import-statement' && !i.path.startsWith('node:')).map((i) => i.path))].sort();
  const inputs = [...Object.keys(metafile.inputs), ...BUNDLE_CONFIG_FILES].map((path) => [path, statInput(path)] as const);
  // A file saved while esbuild read it may be in the bundle as it was before: no record, so the next run builds again.
  const changedMeanwhile = inputs.some(([, stat]) => (stat?.mtimeMs ?? 0) >= startedAt);
  if (!changedMeanwhile) {
    const record: BundleRecord = { script, packages, options: bundleRecipe(esbuild.version), inputs: Object.fromEntries(inputs.map(([path, stat]) => [path, inputStamp(stat)])) };
    replaceFile(bundleRecordFile(task), JSON.stringify(record));
  }
  return { script, packages };
}

/** The bundles of one run: each task's is the same for the whole run, even if its files change meanwhile. */
export function runBundles(): (task: FargateTaskDefinition) => Promise<TaskBundle> {
  const bundles = new Map<string, Promise<TaskBundle>>();
  return (task) => {
    let bundle = bundles.get(task.entry);
    if (!bundle) bundles.set(task.entry, (bundle = taskBundle(task)));
    return bundle;
  };
}

/** Writes a content-named file unless it exists. */
export function writeOnce(path: string, content: Uint8Array | string): void {
  if (!existsSync(path)) replaceFile(path, content);
}

/** Writes a file whole, then renames it into place, so no process reads half of it. */
function replaceFile(path: string, content: Uint8Array | string): void {
  mkdirSync(dirname(path), { recursive: true });
  const partial = `${path}.${process.pid}.partial`;
  writeFileSync(partial, content);
  renameSync(partial, path);
}

/**
 * The spec file a command is given, read and checked as that command needs it. An unreadable
 * file or invalid JSON is a usage error; an invalid spec is reported on stderr.
 */
import { readFile } from 'node:fs/promises';
import { parseSpec, SpecInvalidError, validateSpec, type MigrationSpec } from '../engine/spec/index.js';
import { localOnlySecretProblems } from '../platform/aws/arns.js';
import { UsageError } from './exit-codes.js';
import type { Out } from './format.js';

export async function readSpecFile(path: string): Promise<unknown> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    throw new UsageError(`Cannot read the spec file ${path}: ${code === 'ENOENT' ? 'no such file' : code}.`);
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (error) {
    throw new UsageError(`The spec file ${path} is not valid JSON: ${(error as Error).message}`);
  }
  const kind = Array.isArray(value) ? 'an array' : value === null ? 'null' : typeof value === 'object' ? undefined : `a ${typeof value}`;
  if (kind) throw new UsageError(`The spec file ${path} holds ${kind}: a spec is one JSON object (see README.md, "The spec").`);
  if (nestingDepth(value) > MAX_SPEC_DEPTH) {
    throw new UsageError(`The spec file ${path} nests objects or arrays deeper than ${MAX_SPEC_DEPTH} levels: no spec field is that deep.`);
  }
  return value;
}

/** Far deeper than any spec field (objects.tables.<name>.columns is 4 levels). */
const MAX_SPEC_DEPTH = 32;

/** How deep objects and arrays nest in a parsed JSON value, counted without recursion, stopping past the limit. */
function nestingDepth(value: unknown): number {
  let deepest = 0;
  const pending: [unknown, number][] = [[value, 1]];
  while (pending.length > 0 && deepest <= MAX_SPEC_DEPTH) {
    const [node, depth] = pending.pop()!;
    if (typeof node !== 'object' || node === null) continue;
    deepest = Math.max(deepest, depth);
    for (const child of Object.values(node)) pending.push([child, depth + 1]);
  }
  return deepest;
}

/** The spec as commands that only read it see it (no feature gate); undefined after reporting why it is invalid. */
export async function readSpecForChecks(path: string, err: Out): Promise<MigrationSpec | undefined> {
  try {
    return parseSpec(await readSpecFile(path));
  } catch (error) {
    if (!(error instanceof SpecInvalidError)) throw error;
    err.write(`${error.message}\n`);
    return undefined;
  }
}

/** The spec as start and schedule send it: checked as `run` checks it, and refused with secrets only this machine can read. */
export async function readSpecForAws(path: string, err: Out): Promise<{ spec: MigrationSpec; input: unknown } | undefined> {
  const input = await readSpecFile(path);
  const result = validateSpec(input);
  const problems = [...(result.ok ? [] : result.problems), ...localOnlySecretProblems(input)];
  if (!result.ok || problems.length > 0) {
    err.write(`${new SpecInvalidError(problems).message}\n`);
    return undefined;
  }
  return { spec: result.spec, input };
}

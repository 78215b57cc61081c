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
  try {
    return JSON.parse(text);
  } catch (error) {
    throw new UsageError(`The spec file ${path} is not valid JSON: ${(error as Error).message}`);
  }
}

/** The spec as commands that only read it see it (no feature gate); undefined after reporting why it is invalid. */
export async function readSpecForChecks(path: string, err: Out): Promise<MigrationSpec | undefined> {
  try {
    return parseSpec(await readSpecFile(path), { featureGate: false });
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

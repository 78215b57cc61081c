/**
 * ValidateSpec: the spec as a person wrote it, checked and normalized (defaults filled in) for
 * every later state. The execution's input is the spec itself, or the spec with run options:
 * `{"spec": {...}, "resume": true}` resumes the paused run of that name (what `pgferry resume`
 * and the "Resume migration" event start); `{"spec": {...}, "force": true}` lets a new run drop
 * or truncate the tables a finished run of that name loaded (`pgferry run --force`).
 */
import { PgferryError } from '../errors.js';
import { parseSpec } from '../spec/index.js';

/** What an execution was started with: the spec as given, and its run options. */
export interface RunInput {
  spec: unknown;
  resume: boolean;
  force: boolean;
}

const isObject = (value: unknown): value is Record<string, unknown> => typeof value === 'object' && value !== null && !Array.isArray(value);

/** Tells run options from a spec: a spec has a name and never a `spec` field (its schema refuses unknown fields). */
export function runInputOf(input: unknown): RunInput {
  if (!isObject(input) || !('spec' in input) || 'name' in input) return { spec: input, resume: false, force: false };
  const { spec, resume = false, force = false, ...rest } = input;
  const problems = [
    ...Object.keys(rest).map((field) => `unknown field "${field}"`),
    ...(typeof resume !== 'boolean' ? ['"resume" must be true or false'] : []),
    ...(typeof force !== 'boolean' ? ['"force" must be true or false'] : []),
    ...(!isObject(spec) ? ['"spec" must be the spec object'] : []),
  ];
  if (problems.length > 0) {
    throw new PgferryError('SpecInvalid', `The run options are {"spec": {…the migration's spec…}, "resume": true|false, "force": true|false}: ${problems.join('; ')}.`);
  }
  return { spec, resume: resume as boolean, force: force as boolean };
}

/** Every problem of the spec, and what has not landed yet, is one SpecInvalid error. */
export async function validateSpecStep(input: unknown) {
  const run = runInputOf(input);
  return { spec: parseSpec(run.spec), resume: run.resume, force: run.force };
}

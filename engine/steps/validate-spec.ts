/**
 * ValidateSpec: the spec as a person wrote it, checked and normalized (defaults filled in) for
 * every later state. The execution's input is the spec itself, or a resume of a paused run:
 * `{"resume": true, "spec": {...}}` (what `pgferry resume` and the "Resume migration" event start).
 */
import { PgferryError } from '../errors.js';
import { parseSpec } from '../spec/index.js';

/** What an execution was started with: the spec as given, and whether it resumes the run registered under its name. */
export interface RunInput {
  spec: unknown;
  resume: boolean;
}

const isObject = (value: unknown): value is Record<string, unknown> => typeof value === 'object' && value !== null && !Array.isArray(value);

/** Tells a resume envelope from a spec: a spec never has a `resume` field (its schema refuses unknown fields). */
export function runInputOf(input: unknown): RunInput {
  if (!isObject(input) || !('resume' in input)) return { spec: input, resume: false };
  const { resume, spec, ...rest } = input;
  const extra = Object.keys(rest);
  if (resume !== true || !isObject(spec) || extra.length > 0) {
    throw new PgferryError(
      'SpecInvalid',
      `A resume is started with {"resume": true, "spec": {…the migration's spec…}}${extra.length ? `; unknown field(s): ${extra.join(', ')}` : ''}${resume !== true ? '; "resume" must be true' : ''}${!isObject(spec) ? '; "spec" must be the spec object' : ''}.`,
    );
  }
  return { spec, resume: true };
}

/** Every problem of the spec, and what has not landed yet, is one SpecInvalid error. */
export async function validateSpecStep(input: unknown) {
  const run = runInputOf(input);
  return { spec: parseSpec(run.spec), resume: run.resume };
}

/** ValidateSpec: the spec as a person wrote it, checked and normalized (defaults filled in) for every later state. */
import { parseSpec } from '../spec/index.js';

/** Every problem of the spec, and what has not landed yet, is one SpecInvalid error. */
export async function validateSpecStep(spec: unknown) {
  return { spec: parseSpec(spec) };
}

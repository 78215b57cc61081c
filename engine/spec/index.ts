import { z } from 'zod';
import { PgferryError } from '../errors.js';
import { formatPath, parseWithProblems, type SpecProblem } from './problems.js';
import { isRfc3339Timestamp, migrationSpecSchema, parseSize } from './schema.js';

export { isRfc3339Timestamp, migrationSpecSchema, parseSize };
export type { SpecProblem };

export type MigrationSpec = z.output<typeof migrationSpecSchema>;
export type MigrationSpecInput = z.input<typeof migrationSpecSchema>;
export type Mode = MigrationSpec['mode'];
export type EndpointSpec = MigrationSpec['source'];

/**
 * What a person may not write yet, because its feature has not landed: sections, and values of
 * fields, with the feature they land with. Delete a line when its feature lands.
 */
export const specFeatureGate: readonly { path: string[]; when?: (value: unknown) => boolean; feature: string }[] = [
  { path: ['mapping'], feature: 'name mapping' },
];

function valueAt(input: unknown, path: string[]): { found: boolean; value?: unknown } {
  let value = input;
  for (const key of path) {
    if (typeof value !== 'object' || value === null || Array.isArray(value) || !Object.hasOwn(value, key)) return { found: false };
    value = (value as Record<string, unknown>)[key];
  }
  return { found: true, value };
}

function gateProblems(input: unknown): SpecProblem[] {
  return specFeatureGateProblems(input);
}

function specFeatureGateProblems(input: unknown): SpecProblem[] {
  return specFeatureGate.flatMap(({ path, when, feature }) => {
    const { found, value } = valueAt(input, path);
    if (!found || (when && !when(value))) return [];
    const what = when ? `${path.join('.')} ${JSON.stringify(value)}` : path.join('.');
    return [{ path: formatPath(path), message: `not supported yet: ${what} lands with ${feature}` }];
  });
}

export interface ValidateOptions {
  /** Refuse what has not landed yet (default). Off for checks that only read the spec, like precheck. */
  featureGate?: boolean;
}

export function validateSpec(
  input: unknown,
  { featureGate = true }: ValidateOptions = {},
): { ok: true; spec: MigrationSpec } | { ok: false; problems: SpecProblem[] } {
  const result = parseWithProblems(migrationSpecSchema, input);
  const problems = [...(result.success ? [] : result.problems), ...(featureGate ? gateProblems(input) : [])];
  if (result.success && problems.length === 0) return { ok: true, spec: result.data };
  return { ok: false, problems };
}

export class SpecInvalidError extends PgferryError {
  readonly problems: SpecProblem[];

  constructor(problems: SpecProblem[]) {
    const count = `${problems.length} problem${problems.length === 1 ? '' : 's'}`;
    const lines = problems.map((p) => `  - ${p.path}: ${p.message}`);
    super('SpecInvalid', [`The migration spec has ${count}:`, ...lines].join('\n'));
    this.problems = problems;
  }
}

export function parseSpec(input: unknown, options?: ValidateOptions): MigrationSpec {
  const result = validateSpec(input, options);
  if (!result.ok) throw new SpecInvalidError(result.problems);
  return result.spec;
}

/**
 * Reads the spec as ValidateSpec produced it, when a later state receives it: checked again
 * (a state's input can be edited by hand on the console), without the feature gate, which
 * judges what a person wrote rather than the defaults filled in.
 */
export function parseNormalizedSpec(input: unknown): MigrationSpec {
  const result = parseWithProblems(migrationSpecSchema, input);
  if (!result.success) throw new SpecInvalidError(result.problems);
  return result.data;
}

export const SPEC_SCHEMA_ID = 'urn:pgferry:migration-spec';

/** JSON Schema (draft 2020-12) of the spec as written by people, for the console and editors. */
export function specJsonSchema(): Record<string, unknown> {
  const schema = z.toJSONSchema(migrationSpecSchema, { io: 'input', target: 'draft-2020-12' });
  return {
    $schema: schema.$schema,
    $id: SPEC_SCHEMA_ID,
    title: 'pgferry migration spec',
    ...schema,
    description: 'A pgferry migration: what to copy from which PostgreSQL database to which, and how.',
  };
}

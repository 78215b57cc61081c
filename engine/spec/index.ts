import { z } from 'zod';
import { PgferryError } from '../errors.js';
import { formatPath, parseWithProblems, type SpecProblem } from './problems.js';
import { migrationSpecSchema } from './schema.js';

export { migrationSpecSchema };
export type { SpecProblem };

export type MigrationSpec = z.output<typeof migrationSpecSchema>;
export type MigrationSpecInput = z.input<typeof migrationSpecSchema>;
export type Mode = MigrationSpec['mode'];
export type EndpointSpec = MigrationSpec['source'];

/**
 * Sections whose feature has not landed yet, and the feature they land with. Delete a line when
 * its feature lands.
 */
export const specFeatureGate: Readonly<Partial<Record<keyof MigrationSpecInput, string>>> = {
  objects: 'schema migration and full load',
  mapping: 'schema migration and full load',
  schema: 'schema migration and full load',
  fullLoad: 'full load',
  compare: 'comparison',
  cdc: 'change data capture',
  cutover: 'change data capture',
  alerts: 'the AWS deployment',
};

function gateProblems(input: unknown): SpecProblem[] {
  if (typeof input !== 'object' || input === null || Array.isArray(input)) return [];
  return Object.entries(specFeatureGate)
    .filter(([section]) => Object.hasOwn(input, section))
    .map(([section, feature]) => ({
      path: formatPath([section]),
      message: `not supported yet: ${section} lands with ${feature}`,
    }));
}

export function validateSpec(input: unknown): { ok: true; spec: MigrationSpec } | { ok: false; problems: SpecProblem[] } {
  const result = parseWithProblems(migrationSpecSchema, input);
  const problems = [...(result.success ? [] : result.problems), ...gateProblems(input)];
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

export function parseSpec(input: unknown): MigrationSpec {
  const result = validateSpec(input);
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

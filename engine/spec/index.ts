import { z } from 'zod';
import { PgferryError } from '../errors.js';
import { parseWithProblems, type SpecProblem } from './problems.js';
import { isRfc3339Timestamp, migrationSpecSchema, parseSize } from './schema.js';

export { isRfc3339Timestamp, migrationSpecSchema, parseSize };
export type { SpecProblem };

export type MigrationSpec = z.output<typeof migrationSpecSchema>;
export type MigrationSpecInput = z.input<typeof migrationSpecSchema>;
export type Mode = MigrationSpec['mode'];
export type EndpointSpec = MigrationSpec['source'];

export function validateSpec(input: unknown): { ok: true; spec: MigrationSpec } | { ok: false; problems: SpecProblem[] } {
  const result = parseWithProblems(migrationSpecSchema, input);
  return result.success ? { ok: true, spec: result.data } : { ok: false, problems: result.problems };
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

import type { z } from 'zod';

export interface SpecProblem {
  path: string;
  message: string;
}

type RawIssue = z.core.$ZodRawIssue;
type Issue = z.core.$ZodIssue;

const EXPECTED: Record<string, string> = {
  string: 'a string',
  number: 'a number',
  int: 'a whole number',
  boolean: 'true or false',
  object: 'an object',
  record: 'an object',
  array: 'an array',
};

export function formatPath(path: readonly PropertyKey[]): string {
  if (path.length === 0) return '(root)';
  return path
    .map((segment, i) => {
      if (typeof segment === 'number') return `[${segment}]`;
      const key = String(segment);
      if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(key)) return `[${JSON.stringify(key)}]`;
      return i === 0 ? key : `.${key}`;
    })
    .join('');
}

function describeValue(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  if (typeof value === 'object') return 'an object';
  return /^[aeiou]/.test(typeof value) ? `an ${typeof value}` : `a ${typeof value}`;
}

function show(value: unknown): string {
  const text = JSON.stringify(value) ?? String(value);
  return text.length > 60 ? `${text.slice(0, 57)}...` : text;
}

const plural = (n: number | bigint, word: string) => `${n} ${word}${n === 1 ? '' : 's'}`;

function editDistance(a: string, b: string): number {
  let previous = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const current = [i];
    for (let j = 1; j <= b.length; j++) {
      current[j] = Math.min(previous[j]! + 1, current[j - 1]! + 1, previous[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1));
    }
    previous = current;
  }
  return previous[b.length]!;
}

function closestKey(key: string, allowed: readonly string[]): string | undefined {
  const ranked = allowed
    .map((candidate) => ({ candidate, distance: editDistance(key.toLowerCase(), candidate.toLowerCase()) }))
    .sort((x, y) => x.distance - y.distance);
  const best = ranked[0];
  return best && best.distance <= Math.max(2, Math.floor(key.length / 3)) ? best.candidate : undefined;
}

/** The flags of `schema.sync`, which people also write one level up (`schema.roles`). */
const SYNC_FLAGS = ['indexes', 'constraints', 'foreignKeys', 'triggers', 'views', 'functions', 'sequences', 'materializedViews', 'roles'];

function unknownKeyMessage(key: string, allowed: readonly string[]): string {
  if (allowed.includes('sync') && SYNC_FLAGS.includes(key)) return `unknown field "${key}" — it belongs under "sync": "sync": {"${key}": …}`;
  const suggestion = closestKey(key, allowed);
  if (suggestion) return `unknown field "${key}" — did you mean "${suggestion}"?`;
  return `unknown field "${key}" (allowed: ${allowed.join(', ')})`;
}

function sizeMessage(issue: { origin: string; inclusive?: boolean }, bound: number | bigint, big: boolean): string {
  if (issue.origin === 'string' || issue.origin === 'array') {
    if (!big && bound === 1) return 'must not be empty';
    const unit = issue.origin === 'string' ? 'character' : 'item';
    return `must ${issue.origin === 'array' ? 'have' : 'be'} ${big ? 'at most' : 'at least'} ${plural(bound, unit)}`;
  }
  if (issue.inclusive === false) return `must be ${big ? 'less' : 'greater'} than ${bound}`;
  return `must be ${big ? 'at most' : 'at least'} ${bound}`;
}

/** Plain-English messages for every issue that the schema does not word itself. */
function plainMessage(issue: RawIssue): string {
  switch (issue.code) {
    case 'invalid_type':
      if (issue.input === undefined) return 'is required';
      if (issue.expected === 'int' && typeof issue.input === 'number') return `must be a whole number (got ${issue.input})`;
      return `must be ${EXPECTED[issue.expected] ?? issue.expected} (got ${describeValue(issue.input)})`;
    case 'invalid_value':
      return `must be ${issue.values.length === 1 ? '' : 'one of '}${issue.values.map(show).join(', ')} (got ${show(issue.input)})`;
    case 'too_small':
      return sizeMessage(issue, issue.minimum, false);
    case 'too_big':
      return sizeMessage(issue, issue.maximum, true);
    case 'not_multiple_of':
      return `must be a multiple of ${issue.divisor}`;
    case 'invalid_key':
      return issue.issues.map((i) => i.message).join('; ');
    case 'unrecognized_keys':
      return `unknown fields ${issue.keys.map(show).join(', ')}`;
    default:
      return 'is not valid';
  }
}

/** A misspelt key already explains why the key it stands for is missing: report it once. */
function explainedByTypo(issues: readonly Issue[], allowedKeys: ReadonlyMap<string, readonly string[]>): Set<string> {
  const explained = new Set<string>();
  for (const issue of issues) {
    if (issue.code !== 'unrecognized_keys') continue;
    const allowed = allowedKeys.get(formatPath(issue.path)) ?? [];
    for (const key of issue.keys) {
      const suggestion = closestKey(key, allowed);
      if (suggestion) explained.add(formatPath([...issue.path, suggestion]));
    }
  }
  return explained;
}

function toProblems(issues: readonly Issue[], allowedKeys: ReadonlyMap<string, readonly string[]>, subject: string): SpecProblem[] {
  const explained = explainedByTypo(issues, allowedKeys);
  return issues.flatMap((issue): SpecProblem[] => {
    if (issue.code === 'invalid_type' && issue.input === undefined && explained.has(formatPath(issue.path))) return [];
    if (issue.code === 'unrecognized_keys') {
      const allowed = allowedKeys.get(formatPath(issue.path)) ?? [];
      return issue.keys.map((key) => ({ path: formatPath([...issue.path, key]), message: unknownKeyMessage(key, allowed) }));
    }
    if (issue.path.length === 0 && issue.code === 'invalid_type') {
      return [{ path: '(root)', message: `${subject} must be a JSON object` }];
    }
    return [{ path: formatPath(issue.path), message: issue.message }];
  });
}

export interface ParseOptions {
  /** What the input is, for the problem of an input that is no object: "the spec" unless told. */
  subject?: string;
}

/** Parses with plain-English messages: one problem per issue, and one per unknown key. */
export function parseWithProblems<T extends z.ZodType>(
  schema: T,
  input: unknown,
  options: ParseOptions = {},
): { success: true; data: z.output<T> } | { success: false; problems: SpecProblem[] } {
  const allowedKeys = new Map<string, readonly string[]>();
  const result = schema.safeParse(input, {
    error: (issue) => {
      if (issue.code === 'unrecognized_keys') {
        const shape = (issue.inst as z.core.$ZodObject)._zod.def.shape;
        allowedKeys.set(formatPath(issue.path ?? []), Object.keys(shape));
      }
      return plainMessage(issue);
    },
  });
  if (result.success) return { success: true, data: result.data };
  return { success: false, problems: toProblems(result.error.issues, allowedKeys, options.subject ?? 'the spec') };
}

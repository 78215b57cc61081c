import { describe, expect, it } from 'vitest';
import { whereCondition, whereProblem } from '../../engine/spec/where.js';
import { parseSpec, validateSpec } from '../../engine/spec/index.js';

describe('a where filter is one expression', () => {
  it.each([
    "region = 'eu'",
    'id % 2 = 0 AND (note IS NULL OR note <> \'x\')',
    "note = 'it''s ; fine)'",
    "note = E'a\\\\'' ; b)'",
    'note = $$ ; ) $$ AND "odd ; name)" > 0',
    'note = $t$ $$ ; $t$',
    "created > date'2020-01-01' -- the year\n",
    'id > 10 /* a ; nested /* comment ) */ */',
    "note = U&'d\\0061t' AND x$y = 1",
    'id IN (SELECT 1 UNION SELECT 2)',
    '.5 < f AND f < 1e10',
  ])('accepts %s', (where) => {
    expect(whereProblem(where)).toBeUndefined();
  });

  it.each([
    ['true); CREATE TABLE public.pwned(x int); --', '")" closes a parenthesis the filter did not open'],
    ['true; DROP TABLE items', '";" ends a statement'],
    ['true) UNION SELECT 1 FROM pg_authid WHERE (true', '")" closes a parenthesis the filter did not open'],
    ["note = 'open", 'a string is not closed'],
    ['"open = 1', 'a quoted identifier is not closed'],
    ["note = E'\\' ) UNION x", 'a string is not closed'],
    ['id > 1 /* open', 'a /* comment is not closed'],
    ['note = $q$ open', 'a $q$-quoted string is not closed'],
    ['id = $1', '"$" outside a $$-quoted string'],
    ['(id > 1', 'a "(" is not closed'],
    ["1e'\\' ) x '", 'a number runs into a quote'],
    ['  -- nothing\n', 'it is empty'],
    // PostgreSQL ends a -- comment at a carriage return too.
    ['true -- x\r) UNION SELECT 1 FROM pg_authid WHERE (true', '")" closes a parenthesis the filter did not open'],
    // A no-break space is an identifier character to PostgreSQL, so "\u00a0e'" is not an E'' string there.
    ["\u00a0e'\\' ) UNION SELECT 1 --'", '")" closes a parenthesis the filter did not open'],
  ])('refuses %s', (where, message) => {
    expect(whereProblem(where)).toContain(message);
  });

  it('puts the filter in parentheses with a line break, so a trailing comment cannot swallow what follows', () => {
    expect(whereCondition('id > 1 -- big ones', { schema: 'public', name: 'items' })).toBe('(id > 1 -- big ones\n)');
    expect(() => whereCondition('true); SELECT 1; --', { schema: 'public', name: 'items' })).toThrow(
      'objects.tables["public.items"].where: ")" closes a parenthesis the filter did not open',
    );
  });

  it('is refused by spec validation with the field named', () => {
    const spec = {
      name: 'where-check',
      source: { secret: 'env:S' },
      target: { secret: 'env:T' },
      objects: { tables: { 'public.items': { where: 'true); CREATE TABLE public.pwned(x int); --' } } },
    };
    const result = validateSpec(spec);
    expect(result.ok).toBe(false);
    expect(result.ok ? [] : result.problems).toEqual([
      expect.objectContaining({ path: 'objects.tables["public.items"].where', message: expect.stringContaining('closes a parenthesis') }),
    ]);
    expect(() => parseSpec({ ...spec, objects: { tables: { 'public.items': { where: "region = 'eu'" } } } })).not.toThrow();
  });
});

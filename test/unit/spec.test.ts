import { describe, it, expect } from 'vitest';
import {
  migrationSpecSchema,
  parseSpec,
  SpecInvalidError,
  specJsonSchema,
  validateSpec,
  type SpecProblem,
} from '../../engine/spec/index.js';
import { PgferryError } from '../../engine/errors.js';
import { parseTableKey, tableKey, tableOptions } from '../../engine/catalog/tables.js';
import { parseWithProblems } from '../../engine/spec/problems.js';

const minimal = { name: 'orders-move', source: { secret: 'env:SOURCE_DB' }, target: { secret: 'env:TARGET_DB' } };

function problemsOf(input: unknown): SpecProblem[] {
  const result = validateSpec(input);
  if (result.ok) throw new Error('expected the spec to be invalid');
  return result.problems;
}

/** Problems from the ungated schema, for sections that the feature gate still rejects. */
function schemaProblemsOf(input: unknown): SpecProblem[] {
  const result = parseWithProblems(migrationSpecSchema, input);
  if (result.success) throw new Error('expected the spec to be invalid');
  return result.problems;
}

function expectOneProblem(problems: SpecProblem[], path: string, fragment: string): void {
  expect(problems).toHaveLength(1);
  expect(problems[0]!.path).toBe(path);
  expect(problems[0]!.message).toContain(fragment);
}

describe('valid specs', () => {
  it('accepts a minimal spec and fills every default', () => {
    const spec = parseSpec(minimal);
    expect(spec.name).toBe('orders-move');
    expect(spec.mode).toBe('full');
    expect(spec.schema.existingTables).toBe('error');
    expect(spec.schema.sync.roles).toBe(false);
    expect(spec.schema.sync.indexes).toBe(true);
    expect(spec.fullLoad.parallelism).toBe(4);
    expect(spec.fullLoad.splitTablesLargerThan).toBe(536870912);
    expect(spec.cdc.retryWindowMinutes).toBe(120);
    expect(spec.cdc.batch).toEqual({ maxRows: 50000, maxBytes: 64 * 1024 ** 2, maxDelayMs: 200 });
    expect(spec.objects).toEqual({ include: [], exclude: [], tables: {} });
    expect(spec.mapping.nameCase).toBe('source');
    expect(spec.compare.method).toBe('checksum');
    expect(spec.cutover.mode).toBe('manual');
    expect(spec.alerts.lagThresholdSeconds).toBe(300);
  });

  it('accepts a spec with description, startAt, mode and endpoint options', () => {
    const spec = parseSpec({
      ...minimal,
      description: 'Move the orders database to the new cluster.',
      mode: 'full',
      startAt: '2026-11-23T22:00:00+01:00',
      source: { secret: 'env:SOURCE_DB', database: 'orders', tls: { mode: 'verify-full', caFile: '/etc/ca.pem' } },
    });
    expect(spec.mode).toBe('full');
    expect(spec.startAt).toBe('2026-11-23T22:00:00+01:00');
    expect(spec.source.tls?.mode).toBe('verify-full');
  });

  it.each(['2026-11-23T22:00:00Z', '2026-11-23T22:00:00.123Z', '2026-11-23T22:00:00-05:30', '2028-02-29T00:00:00Z'])(
    'accepts startAt %s',
    (startAt) => {
      expect(validateSpec({ ...minimal, startAt }).ok).toBe(true);
    },
  );

  it.each([
    'arn:aws:secretsmanager:us-east-1:123456789012:secret:prod/orders-AbCdEf',
    'arn:aws-cn:secretsmanager:cn-north-1:123456789012:secret:orders',
    'arn:aws-us-gov:secretsmanager:us-gov-west-1:123456789012:secret:orders',
    'env:SOURCE_DB',
    'env:_x1',
    'file:/run/secrets/source.json',
    'file:relative.json',
  ])('accepts the secret %s', (secret) => {
    expect(validateSpec({ ...minimal, source: { secret } }).ok).toBe(true);
  });

  it('accepts the same secret with different databases', () => {
    expect(validateSpec({ ...minimal, target: { secret: 'env:SOURCE_DB', database: 'copy' } }).ok).toBe(true);
  });
});

describe('section rules (ungated schema)', () => {
  it('parses sizes to bytes', () => {
    const spec = migrationSpecSchema.parse({
      ...minimal,
      fullLoad: { splitTablesLargerThan: '512MB', maxBytesPerSecond: '10 MB' },
      cdc: { batch: { maxBytes: '64kB' } },
      mode: 'cdc',
    });
    expect(spec.fullLoad.splitTablesLargerThan).toBe(512 * 1024 ** 2);
    expect(spec.fullLoad.maxBytesPerSecond).toBe(10 * 1024 ** 2);
    expect(spec.cdc.batch.maxBytes).toBe(64 * 1024);
    expect(migrationSpecSchema.parse({ ...minimal, fullLoad: { splitTablesLargerThan: 4096 } }).fullLoad.splitTablesLargerThan).toBe(4096);
    expect(migrationSpecSchema.parse({ ...minimal, fullLoad: { splitTablesLargerThan: '2gb' } }).fullLoad.splitTablesLargerThan).toBe(2 * 1024 ** 3);
  });

  it.each(['1.5GB', '0MB', '12 parsecs', ''])('rejects the size %j', (splitTablesLargerThan) => {
    expectOneProblem(schemaProblemsOf({ ...minimal, fullLoad: { splitTablesLargerThan } }), 'fullLoad.splitTablesLargerThan', 'must be a size');
  });

  it('fills the defaults of a section given empty', () => {
    const spec = migrationSpecSchema.parse({ ...minimal, objects: { include: [{ schema: 'public' }] } });
    expect(spec.objects.include).toEqual([{ schema: 'public', tables: ['*'] }]);
  });

  it.each([0, 2000])('rejects cdc.retryWindowMinutes %i', (retryWindowMinutes) => {
    expectOneProblem(schemaProblemsOf({ ...minimal, mode: 'cdc', cdc: { retryWindowMinutes } }), 'cdc.retryWindowMinutes', 'must be between 1 and 1440');
  });

  it('accepts a retry window of 2 minutes, so a short outage can be drilled', () => {
    expect(migrationSpecSchema.parse({ ...minimal, mode: 'cdc', cdc: { retryWindowMinutes: 2 } }).cdc.retryWindowMinutes).toBe(2);
  });

  it('rejects a slot name with upper case', () => {
    expectOneProblem(schemaProblemsOf({ ...minimal, mode: 'cdc', cdc: { slotName: 'Pgferry' } }), 'cdc.slotName', 'lower-case letters');
  });

  it('reads the spec it produced back unchanged, as later states do', () => {
    const spec = parseSpec({ ...minimal, mode: 'full+cdc', startAt: '2026-11-23T22:00:00Z' });
    expect(parseSpec(JSON.parse(JSON.stringify(spec)))).toEqual(spec);
  });

  it('rejects columns together with excludeColumns', () => {
    const problems = schemaProblemsOf({ ...minimal, objects: { tables: { 'public.users': { columns: ['id'], excludeColumns: ['secret'] } } } });
    expectOneProblem(problems, 'objects.tables["public.users"]', 'not both');
  });

  it('rejects a table key that is not "schema.table" and repeated operations', () => {
    const problems = schemaProblemsOf({ ...minimal, objects: { tables: { users: {}, 'public.orders': { operations: ['insert', 'insert'] } } } });
    expect(problems).toEqual([
      { path: 'objects.tables.users', message: expect.stringContaining('"schema.table"') },
      { path: 'objects.tables["public.orders"].operations', message: 'must not list an operation twice' },
    ]);
  });

  it('names a table whose name contains a dot by double-quoting it, and finds its options whatever the spelling', () => {
    const spec = parseSpec({
      ...minimal,
      objects: { tables: { 'app."v1.2"': { where: 'id > 0' }, '"odd.schema"."a""b"': { columns: ['id'] }, '"public"."users"': { excludeColumns: ['pw'] } } },
    });
    expect(tableOptions(spec.objects, { schema: 'app', name: 'v1.2' })).toEqual({ where: 'id > 0' });
    expect(tableOptions(spec.objects, { schema: 'odd.schema', name: 'a"b' })).toEqual({ columns: ['id'] });
    expect(tableOptions(spec.objects, { schema: 'public', name: 'users' })).toEqual({ excludeColumns: ['pw'] });
    expect(tableOptions(spec.objects, { schema: 'app', name: 'v1' })).toEqual({});
    expect(parseTableKey('app."v1.2"')).toEqual({ schema: 'app', name: 'v1.2' });
    expect(tableKey({ schema: 'odd.schema', name: 'plain' })).toBe('"odd.schema".plain');
    const problems = schemaProblemsOf({ ...minimal, objects: { tables: { 'app.v1.2': {} } } });
    expect(problems).toEqual([{ path: 'objects.tables["app.v1.2"]', message: expect.stringContaining('double-quote a name that contains a dot') }]);
  });

  it('points a sync flag written one level up (schema.roles) to schema.sync', () => {
    const problems = schemaProblemsOf({ ...minimal, schema: { roles: true } });
    expect(problems).toEqual([{ path: 'schema.roles', message: 'unknown field "roles" — it belongs under "sync": "sync": {"roles": …}' }]);
  });

  it('reports indices in paths', () => {
    expectOneProblem(schemaProblemsOf({ ...minimal, objects: { include: [{ schema: 'public' }, { schema: 7 }] } }), 'objects.include[1].schema', 'must be a string (got a number)');
  });

  it('rejects an invalid SNS topic ARN', () => {
    expectOneProblem(schemaProblemsOf({ ...minimal, alerts: { snsTopicArn: 'arn:aws:sqs:us-east-1:123456789012:q' } }), 'alerts.snsTopicArn', 'SNS topic ARN');
  });
});

describe('invalid specs', () => {
  it('requires name, source and target', () => {
    expect(problemsOf({})).toEqual([
      { path: 'name', message: 'is required' },
      { path: 'source', message: 'is required' },
      { path: 'target', message: 'is required' },
    ]);
  });

  it.each([
    ['too short', 'abc'],
    ['too long', `a${'b'.repeat(50)}`],
    ['starting with a digit', '1orders'],
    ['with a bad character', 'orders.move'],
  ])('rejects a name %s', (_, name) => {
    expectOneProblem(problemsOf({ ...minimal, name }), 'name', 'must be 4–50 characters: a letter first');
  });

  it('rejects a name of the wrong type', () => {
    expectOneProblem(problemsOf({ ...minimal, name: 42 }), 'name', 'must be a string (got a number)');
  });

  it('rejects a description that is too long', () => {
    expectOneProblem(problemsOf({ ...minimal, description: 'x'.repeat(257) }), 'description', 'must be at most 256 characters');
  });

  it.each(['=', '<', '>', '&', "'", '"'])('rejects a description containing %s', (char) => {
    expectOneProblem(problemsOf({ ...minimal, description: `a ${char} b` }), 'description', `(found ${char})`);
  });

  it('rejects an unknown mode', () => {
    expectOneProblem(problemsOf({ ...minimal, mode: 'ful' }), 'mode', 'must be one of "full", "full+cdc", "cdc" (got "ful")');
  });

  it.each(['2026-11-23T22:00:00', '2026-02-30T22:00:00Z', '2026-11-23 22:00:00Z', 'tomorrow', '2026-11-23T22:00:00+0100'])(
    'rejects startAt %s',
    (startAt) => {
      expectOneProblem(problemsOf({ ...minimal, startAt }), 'startAt', 'must be an RFC 3339 timestamp with a time zone');
    },
  );

  it.each([
    'arn:aws:secretsmanager:us-east-1:12345:secret:orders',
    'arn:aws:secretsmanager:useast1:123456789012:secret:orders',
    'arn:aws:ssm:us-east-1:123456789012:parameter/orders',
    'env:1BAD',
    'env:',
    'file:',
    'postgres://localhost/orders',
  ])('rejects the secret %s', (secret) => {
    expectOneProblem(problemsOf({ ...minimal, source: { secret } }), 'source.secret', 'must be a Secrets Manager ARN (arn:aws:secretsmanager:…), "env:NAME" or "file:PATH"');
  });

  it('suggests the closest field for an unknown key', () => {
    expectOneProblem(problemsOf({ ...minimal, descriptoin: 'x' }), 'descriptoin', 'unknown field "descriptoin" — did you mean "description"?');
  });

  it('reports a nested unknown key at its own path', () => {
    const problems = problemsOf({ ...minimal, source: { secret: 'env:SOURCE_DB', secert: 'env:X' } });
    expectOneProblem(problems, 'source.secert', 'did you mean "secret"?');
  });

  it('lists the allowed fields when no key is close', () => {
    expectOneProblem(problemsOf({ ...minimal, source: { secret: 'env:A', hostname: 'db' } }), 'source.hostname', 'allowed: secret, database, tls');
  });

  it('rejects the same database as source and target', () => {
    expectOneProblem(problemsOf({ ...minimal, target: { secret: 'env:SOURCE_DB' } }), 'target', 'source and target are the same database');
  });

  it('reports three typos as exactly three problems', () => {
    const problems = problemsOf({ ...minimal, mdoe: 'full', source: { secret: 'env:SOURCE_DB', databse: 'x' }, target: { secret: 'env:TARGET_DB', tsl: {} } });
    expect(problems.map((p) => p.path).sort()).toEqual(['mdoe', 'source.databse', 'target.tsl']);
    expect(problems.every((p) => p.message.includes('did you mean'))).toBe(true);
  });

  it('reports every problem at once', () => {
    const problems = problemsOf({
      name: 'x',
      mode: 'ful',
      cdc: { retryWindowMinutes: 0 },
      mapping: { nameCase: 'title' },
      source: { secret: 'env:A' },
      target: { secret: 'nope' },
    });
    expect(problems.map((p) => p.path).sort()).toEqual(['cdc.retryWindowMinutes', 'mapping.nameCase', 'mode', 'name', 'target.secret']);
  });

  it.each([null, 'spec', 42, [minimal]])('rejects the non-object %j', (input) => {
    expect(problemsOf(input)).toEqual([{ path: '(root)', message: 'the spec must be a JSON object' }]);
  });
});

describe('every section', () => {
  it('accepts mapping, and refuses nothing as not supported yet', () => {
    const spec = parseSpec({
      ...minimal,
      mapping: { schemas: { app: 'sales' }, tables: { 'app.Orders': 'orders' }, columns: { 'app.Orders': { CustomerId: 'customer_id' } }, nameCase: 'lower' },
    });
    expect(spec.mapping).toEqual({ schemas: { app: 'sales' }, tables: { 'app.Orders': 'orders' }, columns: { 'app.Orders': { CustomerId: 'customer_id' } }, nameCase: 'lower' });
    expectOneProblem(problemsOf({ ...minimal, mapping: { nameCase: 'preserve' } }), 'mapping.nameCase', 'source');
    expectOneProblem(problemsOf({ ...minimal, mapping: { tables: { 'app.orders': '' } } }), 'mapping.tables["app.orders"]', '');
  });

  it("accepts alerts.lagThresholdSeconds (the replicate task's lag metric uses it)", () => {
    expect(parseSpec({ ...minimal, alerts: { lagThresholdSeconds: 60 } }).alerts.lagThresholdSeconds).toBe(60);
    expect(parseSpec({ ...minimal, alerts: {} }).alerts.lagThresholdSeconds).toBe(300);
    expectOneProblem(problemsOf({ ...minimal, alerts: { lagThresholdSeconds: 0 } }), 'alerts.lagThresholdSeconds', 'at least 1');
  });

  it('accepts alerts.snsTopicArn, the per-migration alert topic (issue 15, item 4)', () => {
    const spec = parseSpec({ ...minimal, alerts: { lagThresholdSeconds: 60, snsTopicArn: 'arn:aws:sns:eu-west-1:123456789012:pgferry-alerts' } });
    expect(spec.alerts).toEqual({ lagThresholdSeconds: 60, snsTopicArn: 'arn:aws:sns:eu-west-1:123456789012:pgferry-alerts' });
  });

  it.each(['full+cdc', 'cdc'])('accepts mode %s with its cdc and cutover sections', (mode) => {
    const result = validateSpec({ ...minimal, mode, cdc: { conflictPolicy: 'overwrite', heartbeatTimeoutSeconds: 5 }, cutover: { mode: 'auto', fenceSource: true } });
    expect(result.ok).toBe(true);
  });

  it('accepts row filters and column choices with CDC (issue 15 item 2: the stream follows them)', () => {
    const result = validateSpec({
      ...minimal,
      mode: 'full+cdc',
      objects: { tables: { 'public.a': { where: 'id > 1' }, 'public.b': { excludeColumns: ['secret'] }, 'public.c': { columns: ['id'] } } },
    });
    expect(result.ok).toBe(true);
  });

  it('accepts migrating roles (schema.sync.roles)', () => {
    expect(validateSpec({ ...minimal, schema: { sync: { roles: true } } }).ok).toBe(true);
    expect(validateSpec({ ...minimal, schema: { sync: { roles: false } } }).ok).toBe(true);
  });

  it('accepts the sections whose features have landed', () => {
    const spec = parseSpec({
      ...minimal,
      objects: { include: [{ schema: 'shop' }], tables: { 'shop.orders': { where: 'id > 10' } } },
      schema: { existingTables: 'truncate' },
      fullLoad: { parallelism: 8 },
      compare: { method: 'count' },
    });
    expect(spec.fullLoad.parallelism).toBe(8);
  });

  it('is off for reading-only checks such as precheck', () => {
    expect(validateSpec({ ...minimal, mode: 'full+cdc', cdc: {} }).ok).toBe(true);
  });
});

describe('SpecInvalidError', () => {
  it('lists every problem in its message', () => {
    let error: unknown;
    try {
      parseSpec({ ...minimal, name: '1x', mode: 'ful', source: { secret: 'vault:x' } });
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(SpecInvalidError);
    expect(error).toBeInstanceOf(PgferryError);
    const specError = error as SpecInvalidError;
    expect(specError.name).toBe('SpecInvalid');
    expect(specError.problems).toHaveLength(3);
    expect(specError.message).toBe(
      [
        'The migration spec has 3 problems:',
        '  - name: must be 4–50 characters: a letter first, then letters, digits, "-" or "_"',
        '  - mode: must be one of "full", "full+cdc", "cdc" (got "ful")',
        '  - source.secret: must be a Secrets Manager ARN (arn:aws:secretsmanager:…), "env:NAME" or "file:PATH"',
      ].join('\n'),
    );
  });

  it('says "1 problem" for one problem', () => {
    expect(new SpecInvalidError([{ path: 'name', message: 'is required' }]).message).toBe(
      'The migration spec has 1 problem:\n  - name: is required',
    );
  });
});

describe('specJsonSchema', () => {
  it('describes the input form', () => {
    const schema = specJsonSchema();
    expect(schema.$schema).toBe('https://json-schema.org/draft/2020-12/schema');
    expect(schema.$id).toEqual(expect.any(String));
    expect(schema.title).toEqual(expect.any(String));
    const properties = schema.properties as Record<string, { description?: string }>;
    expect(properties.name?.description).toContain('4–50');
    expect(schema.required).toEqual(expect.arrayContaining(['name', 'source', 'target']));
    expect(schema.required).not.toContain('mode');
    expect(JSON.parse(JSON.stringify(schema))).toEqual(schema);
  });
});

describe('cdc.maxRetainedWal and cdc.dropSlotAboveMaxRetainedWal', () => {
  it('has no threshold and never drops the slot by default', () => {
    const spec = parseSpec({ ...minimal, mode: 'full+cdc' });
    expect(spec.cdc.maxRetainedWal).toBeUndefined();
    expect(spec.cdc.dropSlotAboveMaxRetainedWal).toBe(false);
  });

  it('reads a size and the explicit choice to drop the slot above it', () => {
    const spec = parseSpec({ ...minimal, mode: 'full+cdc', cdc: { maxRetainedWal: '50GB', dropSlotAboveMaxRetainedWal: true } });
    expect(spec.cdc.maxRetainedWal).toBe(50 * 1024 ** 3);
    expect(spec.cdc.dropSlotAboveMaxRetainedWal).toBe(true);
  });

  it('rejects a value that is not a size', () => {
    expectOneProblem(schemaProblemsOf({ ...minimal, mode: 'cdc', cdc: { maxRetainedWal: '50 gigs' } }), 'cdc.maxRetainedWal', 'must be a size');
  });

  it('refuses to drop the slot above a threshold that is not set', () => {
    expectOneProblem(
      schemaProblemsOf({ ...minimal, mode: 'cdc', cdc: { dropSlotAboveMaxRetainedWal: true } }),
      'cdc.dropSlotAboveMaxRetainedWal',
      'needs cdc.maxRetainedWal',
    );
  });
});

describe('flow control limits (issue 15, item 3)', () => {
  it('accepts row and byte limits for the full load and CDC, no longer refused as not supported', () => {
    const spec = parseSpec({
      ...minimal,
      mode: 'full+cdc',
      fullLoad: { maxRowsPerSecond: 5000, maxBytesPerSecond: '10MB' },
      cdc: { maxRowsPerSecond: 200, maxBytesPerSecond: 65536 },
    });
    expect(spec.fullLoad).toMatchObject({ maxRowsPerSecond: 5000, maxBytesPerSecond: 10 * 1024 ** 2 });
    expect(spec.cdc).toMatchObject({ maxRowsPerSecond: 200, maxBytesPerSecond: 65536 });
    expect(parseSpec(minimal).cdc.maxRowsPerSecond).toBeUndefined();
  });

  it.each([0, -5, 1.5, 'fast', '100'])('refuses the row limit %j, naming the field', (value) => {
    for (const section of ['fullLoad', 'cdc']) {
      expectOneProblem(
        problemsOf({ ...minimal, mode: 'full+cdc', [section]: { maxRowsPerSecond: value } }),
        `${section}.maxRowsPerSecond`,
        'must be a whole number of rows per second, at least 1 (leave it out for no limit)',
      );
    }
  });

  it.each([0, '0MB', '1.5MB', 'lots'])('refuses the byte limit %j, naming the field', (value) => {
    expectOneProblem(problemsOf({ ...minimal, mode: 'cdc', cdc: { maxBytesPerSecond: value } }), 'cdc.maxBytesPerSecond', 'must be a size');
  });
});

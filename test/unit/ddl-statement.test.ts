import { describe, expect, it } from 'vitest';
import { decide } from '../../engine/cdc/ddl/apply.js';
import { capturedDdl, concern, runnableStatement, splitStatements, type CapturedDdl } from '../../engine/cdc/ddl/statement.js';

const ddl = (statement: string, commandTag: string, objects: CapturedDdl['objects'] = [{ type: 'table', schema: 'public', identity: 'public.items', table: { schema: 'public', name: 'items' } }]): CapturedDdl => ({
  id: '1',
  xid: '10',
  commandTag,
  objects,
  searchPath: 'public',
  statement,
  published: [],
  publishError: null,
});

describe('splitStatements', () => {
  it('splits at top-level semicolons only: not inside strings, quoted names, dollar quotes or comments', () => {
    const text = `ALTER TABLE "a;b" ADD c text DEFAULT 'x;y'; -- a comment; with a semicolon
      CREATE FUNCTION f() RETURNS int AS $body$ SELECT 1; $body$ LANGUAGE sql; /* a; /* nested; */ comment */ ;
      SELECT E'it\\'s; one'`;
    const statements = splitStatements(text).map((s) => s.trim());
    expect(statements).toHaveLength(3);
    expect(statements[0]).toBe(`ALTER TABLE "a;b" ADD c text DEFAULT 'x;y'`);
    expect(statements[1]).toMatch(/CREATE FUNCTION f\(\) RETURNS int AS \$body\$ SELECT 1; \$body\$ LANGUAGE sql$/);
    expect(statements[2]).toBe("SELECT E'it\\'s; one'");
    expect(splitStatements('ALTER TABLE a ADD b int;  ')).toHaveLength(1);
  });
});

describe('runnableStatement', () => {
  it('runs a single statement of the captured command, dropping CONCURRENTLY from index statements', () => {
    expect(runnableStatement(ddl('ALTER TABLE items ADD COLUMN c int;', 'ALTER TABLE'))).toEqual({ statement: 'ALTER TABLE items ADD COLUMN c int' });
    expect(runnableStatement(ddl('create unique index concurrently i on items (c)', 'CREATE INDEX'))).toEqual({ statement: 'create unique index i on items (c)' });
    expect(runnableStatement(ddl('DROP INDEX CONCURRENTLY i', 'DROP INDEX'))).toEqual({ statement: 'DROP INDEX i' });
  });

  it('refuses DDL run by a DO block or a function, and statements that compute their rows', () => {
    expect(runnableStatement(ddl("DO $$ BEGIN EXECUTE 'ALTER TABLE items ADD c int'; END $$", 'ALTER TABLE'))).toMatchObject({ reason: expect.stringContaining('DO block') });
    expect(runnableStatement(ddl('SELECT add_columns()', 'ALTER TABLE'))).toMatchObject({ reason: expect.stringContaining('function') });
    expect(runnableStatement(ddl('CREATE TABLE t AS SELECT * FROM items', 'CREATE TABLE AS'))).toMatchObject({ reason: expect.stringContaining('computes its rows') });
  });

  it('finds the statement of a change in a multi-statement text by its tag and order, and checks that it names the object', () => {
    const text = "BEGIN; CREATE TABLE a (id int); INSERT INTO a VALUES (1); CREATE TABLE b (id int); ALTER TABLE a ADD v int; COMMIT";
    const a = [{ type: 'table', schema: 'public', identity: 'public.a', table: { schema: 'public', name: 'a' } }];
    const b = [{ type: 'table', schema: 'public', identity: 'public.b', table: { schema: 'public', name: 'b' } }];
    expect(runnableStatement(ddl(text, 'CREATE TABLE', a), 0)).toEqual({ statement: 'CREATE TABLE a (id int)' });
    expect(runnableStatement(ddl(text, 'CREATE TABLE', b), 1)).toEqual({ statement: 'CREATE TABLE b (id int)' });
    expect(runnableStatement(ddl(text, 'ALTER TABLE', a), 0)).toEqual({ statement: 'ALTER TABLE a ADD v int' });
    // The statement found does not name the change's table: a change pgferry cannot place.
    expect(runnableStatement(ddl(text, 'CREATE TABLE', b), 0)).toMatchObject({ reason: expect.stringContaining('cannot tell which') });
    expect(runnableStatement(ddl('CREATE TABLE a (id int); SELECT f()', 'CREATE TABLE', a), 0)).toMatchObject({ reason: expect.stringContaining('may change the schema itself') });
  });
});

describe('concern', () => {
  const selection = { include: [{ schema: 'public', tables: ['*'] }], exclude: [{ schema: 'public', tables: ['tmp_*'] }], tables: {} };
  it('takes changes of selected tables and of objects of selected schemas, and nothing else', () => {
    expect(concern(selection, ddl('ALTER TABLE items ADD c int', 'ALTER TABLE'))).toBe('table');
    expect(concern(selection, ddl('ALTER TABLE tmp_x ADD c int', 'ALTER TABLE', [{ type: 'table', schema: 'public', identity: 'public.tmp_x', table: { schema: 'public', name: 'tmp_x' } }]))).toBeUndefined();
    expect(concern(selection, ddl('CREATE SEQUENCE s', 'CREATE SEQUENCE', [{ type: 'sequence', schema: 'public', identity: 'public.s', table: null }]))).toBe('schema');
    expect(concern(selection, ddl('CREATE SEQUENCE o.s', 'CREATE SEQUENCE', [{ type: 'sequence', schema: 'o', identity: 'o.s', table: null }]))).toBeUndefined();
  });

  it('leaves privileges and owners alone: roles are not migrated', () => {
    expect(concern(selection, ddl('GRANT SELECT ON items TO reporting', 'GRANT'))).toBeUndefined();
    expect(concern(selection, ddl('REVOKE ALL ON items FROM PUBLIC', 'REVOKE'))).toBeUndefined();
    expect(concern(selection, ddl('ALTER TABLE items OWNER TO "App Owner";', 'ALTER TABLE'))).toBeUndefined();
    expect(concern(selection, ddl('ALTER TABLE items ADD COLUMN owner_to text', 'ALTER TABLE'))).toBe('table');
  });
});

describe('decide', () => {
  it('replicate runs, retries what failed and skips what was paused for a manual apply; pause skips on resume; error always stops', () => {
    expect(decide('replicate', undefined)).toBe('run');
    expect(decide('replicate', { status: 'failed', detail: '0A000: …' })).toBe('retry');
    expect(decide('replicate', { status: 'paused', detail: 'a multi-statement text' })).toBe('skip');
    expect(decide('replicate', { status: 'paused', detail: 'rejected: cdc.ddl is "error"' })).toBe('run');
    expect(decide('pause', undefined)).toBe('stop');
    expect(decide('pause', { status: 'failed', detail: null })).toBe('skip');
    expect(decide('error', { status: 'paused', detail: null })).toBe('stop');
  });
});

describe('capturedDdl', () => {
  it('reads a capture row from pgoutput text values', () => {
    const row = capturedDdl({ id: '7', xid: '900', command_tag: 'CREATE TABLE', objects: '[]', search_path: '"$user", public', statement: 'CREATE TABLE t ()', published: '{pgferry_a,"odd name"}', publish_error: null });
    expect(row).toMatchObject({ id: '7', commandTag: 'CREATE TABLE', searchPath: '"$user", public', published: ['pgferry_a', 'odd name'], publishError: null });
  });
});

/** What schema migration reports per object, its errors, and the session plumbing shared by its phases. */
import type pg from 'pg';
import { messageOf, withTransaction } from '../sql.js';
import { PgferryError } from '../errors.js';

export type { SchemaObjectResult, SchemaObjectStatus } from '../control/index.js';

/** Selected tables already exist on the target and `schema.existingTables` is `error`. */
export class SchemaConflictError extends PgferryError {
  readonly tables: string[];

  constructor(tables: string[]) {
    const list = tables.join(', ');
    super(
      'SchemaConflict',
      `${tables.length === 1 ? 'Table' : `${tables.length} tables`} already exist${tables.length === 1 ? 's' : ''} on the target: ${list}. ` +
        'Set schema.existingTables to ignore, truncate or drop, or drop them.',
    );
    this.tables = tables;
  }
}

/** A statement of the schema migration failed: names the object and PostgreSQL's reason. */
export function schemaFailed(action: string, kind: string, identity: string, error: unknown): PgferryError {
  return new PgferryError('pgferry.SchemaFailed', `Cannot ${action} ${kind} ${identity}: ${messageOf(error)}`, { cause: error });
}

/** Runs `statements` for one object, turning a failure into a SchemaFailed error that names it. */
export async function runFor(client: pg.Client, kind: string, identity: string, statements: string[], action = 'create'): Promise<void> {
  for (const sql of statements) {
    try {
      await client.query(sql);
    } catch (error) {
      throw schemaFailed(action, kind, identity, error);
    }
  }
}

/**
 * Reads the source catalog in one read-only snapshot with an empty search_path, so every
 * name the server deparses (`pg_get_viewdef`, `format_type`, `pg_get_expr`…) is schema-qualified.
 */
export async function readSource<T>(source: pg.Client, read: () => Promise<T>): Promise<T> {
  return withTransaction(
    source,
    async () => {
      await source.query(`SET LOCAL search_path = ''`);
      await source.query('SET LOCAL standard_conforming_strings = on');
      return read();
    },
    'BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY',
  );
}

/** Session settings for DDL on the target: function bodies may name tables created later. */
export const TARGET_SETTINGS = [
  'check_function_bodies = off',
  'client_min_messages = warning',
  `search_path = ''`,
  'standard_conforming_strings = on',
];

/**
 * Runs `work` over `items` with up to `parallelism` target connections at once. The first
 * failure stops handing out items; the others finish their current one, then it is thrown.
 */
export async function inParallel<T>(
  items: T[],
  parallelism: number,
  connect: () => Promise<pg.Client>,
  settings: string[],
  work: (client: pg.Client, item: T) => Promise<void>,
): Promise<void> {
  let next = 0;
  let failure: { error: unknown } | undefined;
  const worker = async () => {
    let client: pg.Client | undefined;
    try {
      client = await connect();
      for (const setting of settings) await client.query(`SET ${setting}`);
      while (!failure && next < items.length) await work(client, items[next++]!);
    } catch (error) {
      failure ??= { error };
    } finally {
      await client?.end().catch(() => undefined);
    }
  };
  const workers = Math.min(Math.max(1, parallelism), items.length);
  await Promise.all(Array.from({ length: workers }, worker));
  if (failure) throw failure.error;
}

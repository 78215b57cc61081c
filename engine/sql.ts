/**
 * Small helpers every module that talks to PostgreSQL shares: identifier quoting, one
 * transaction block, waiting and polling, and the message of an unknown error.
 * (docs/architecture.md, "Shared helpers")
 */
import type pg from 'pg';

/** Any object named by schema and name (catalog/tables.ts's TableRef). */
interface Named {
  schema: string;
  name: string;
}

/** `schema.name` as a person reads it (not quoted: for messages and map keys only, never SQL). */
export const qualified = (t: Named) => `${t.schema}.${t.name}`;

/** An identifier for SQL text, the way PostgreSQL's quote_ident/format('%I') quote it, always. */
export function quoteIdent(name: string): string {
  return `"${name.replace(/"/g, '""')}"`;
}

export const quoteTable = (t: Named) => `${quoteIdent(t.schema)}.${quoteIdent(t.name)}`;

/** A COPY column list ` ("a", "b")`; empty for a table without columns, which COPY takes only without a list. */
export const copyColumns = (quoted: string[]) => (quoted.length ? ` (${quoted.join(', ')})` : '');

/**
 * A query sent through the extended protocol (Parse/Bind/Execute) even without parameters, so
 * the server refuses more than one statement in it. pg uses it only for queries with values or
 * a name unless told `queryMode: 'extended'` (not in @types/pg). Every query that contains SQL
 * text from the spec (a `where` filter) goes through this.
 */
export const oneStatement = <C extends pg.QueryConfig | pg.QueryArrayConfig>(config: C): C => ({ ...config, queryMode: 'extended' });

/** The message of anything thrown. */
export const messageOf = (error: unknown): string => (error instanceof Error ? error.message : String(error));

/** The SQLSTATE of a PostgreSQL error (undefined for anything else). */
export const codeOf = (error: unknown): string | undefined => (error as { code?: string } | null)?.code;

/**
 * Runs `body` in one transaction: COMMIT when it returns, ROLLBACK when it throws (the
 * original error goes on; a failed ROLLBACK on a lost connection does not hide it).
 */
export async function withTransaction<T>(client: pg.ClientBase, body: () => Promise<T>, begin = 'BEGIN'): Promise<T> {
  await client.query(begin);
  try {
    const result = await body();
    await client.query('COMMIT');
    return result;
  } catch (error) {
    await client.query('ROLLBACK').catch(() => undefined);
    throw error;
  }
}

/** Waits `ms`, or less if `signal` aborts first (it never rejects, and leaves no listener behind). */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise<void>((resolve) => {
    if (signal?.aborted) return resolve();
    const done = () => {
      clearTimeout(timer);
      signal?.removeEventListener('abort', done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal?.addEventListener('abort', done, { once: true });
  });
}

/**
 * Asks `check` every `intervalMs` until it returns something other than undefined, and returns
 * that; undefined when `signal` aborts or `timeoutMs` passes first.
 */
export async function pollUntil<T>(
  check: () => Promise<T | undefined>,
  { intervalMs, timeoutMs = Infinity, signal }: { intervalMs: number; timeoutMs?: number; signal?: AbortSignal },
): Promise<T | undefined> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (signal?.aborted) return undefined;
    const value = await check();
    if (value !== undefined) return value;
    if (Date.now() + intervalMs > deadline) return undefined;
    await sleep(intervalMs, signal);
  }
}

/**
 * Replication origins, which keep changes from looping between two sides that replicate to each
 * other (cutover.reverse): every applier session marks its transactions with the origin of its
 * direction (pg_replication_origin_session_setup), pgoutput sends that origin's name with each
 * such transaction (an Origin message right after Begin), and the stream of the other direction
 * drops whole transactions whose origin it is told to skip. Only those names are skipped: the
 * changes another migration applied (a cascade) still flow on.
 */
import type pg from 'pg';
import { PgferryError } from '../errors.js';
import { codeOf, messageOf, sleep } from '../sql.js';
import type { PgoutputMessage } from './pgoutput.js';

/** How an applier marks its transactions and which transactions its stream drops. */
export interface OriginOptions {
  /** The origin of this direction's applier sessions (the main session's; early-apply sessions use earlyOriginNames). */
  name: string;
  /** Transactions whose origin is one of these names are not applied (the other direction's, with its early-apply names). */
  skipOrigins: string[];
}

/**
 * An origin is held by one session at a time (PostgreSQL before 19), so the sessions that apply
 * large transactions early (early-apply.ts, at most 4 at once) each take one of these, twice as
 * many so that sessions of a streamer being replaced cannot use them all up.
 */
export const EARLY_ORIGINS = 8;

/** The origins the early-apply sessions of the applier whose origin is `name` use. */
export function earlyOriginNames(name: string): string[] {
  return Array.from({ length: EARLY_ORIGINS }, (_, i) => `${name}_${i + 1}`);
}

/** Every origin an applier whose origin is `name` marks transactions with: what the other direction skips. */
export function originFamily(name: string): string[] {
  return [name, ...earlyOriginNames(name)];
}


/** A session that held an origin may take a moment to exit (a replaced streamer's, a reconnect's). */
const SETUP_WAIT_MS = 30_000;

function originError(name: string, error: unknown): PgferryError {
  return new PgferryError(
    'pgferry.ReplicationOriginFailed',
    `Cannot mark the applier's transactions with replication origin ${name}: ${messageOf(error)}. ` +
      'The applying user needs superuser (rds_superuser on RDS) or EXECUTE on pg_replication_origin_create, ' +
      'pg_replication_origin_session_setup and pg_replication_origin_drop (GRANT EXECUTE ON FUNCTION … TO the user).',
    { cause: error },
  );
}

/** Creates the origin unless it exists (concurrent creators are fine). */
async function ensureOrigin(client: pg.Client, name: string): Promise<void> {
  try {
    await client.query('SELECT pg_replication_origin_create($1) WHERE pg_replication_origin_oid($1) IS NULL', [name]);
  } catch (error) {
    if (codeOf(error) !== '23505') throw originError(name, error); // 23505: created meanwhile by another session
  }
}

/** Tries to take `name` in this session; false when another session holds it (55006). */
async function trySetup(client: pg.Client, name: string): Promise<boolean> {
  try {
    await client.query('SELECT pg_replication_origin_session_setup($1)', [name]);
    return true;
  } catch (error) {
    if (codeOf(error) === '55006') return false;
    throw originError(name, error);
  }
}

/**
 * Marks every transaction this session commits from now on with one of `names` (created if
 * missing): the first that no other session holds, waiting up to SETUP_WAIT_MS for one.
 * Returns the name taken.
 */
export async function setUpSessionOrigin(client: pg.Client, names: readonly string[]): Promise<string> {
  for (const name of names) await ensureOrigin(client, name);
  const deadline = Date.now() + SETUP_WAIT_MS;
  for (;;) {
    for (const name of names) if (await trySetup(client, name)) return name;
    if (Date.now() > deadline) {
      throw originError(names.join(', '), new Error(`every one of them is held by another session (see pg_replication_origin_status)`));
    }
    await sleep(200);
  }
}

/** Drops the origins that exist among `names`, waiting for a session that still holds one to end; returns the ones dropped. */
export async function dropOrigins(client: pg.Client, names: readonly string[]): Promise<string[]> {
  const { rows } = await client.query<{ roname: string }>('SELECT roname FROM pg_replication_origin WHERE roname = ANY($1::text[])', [names]);
  const dropped: string[] = [];
  for (const { roname } of rows) {
    const deadline = Date.now() + SETUP_WAIT_MS;
    for (;;) {
      try {
        await client.query('SELECT pg_replication_origin_drop($1)', [roname]);
        dropped.push(roname);
        break;
      } catch (error) {
        if (codeOf(error) === '42704') break; // dropped meanwhile
        if (codeOf(error) !== '55006' || Date.now() > deadline) throw originError(roname, error);
        await sleep(200);
      }
    }
  }
  return dropped;
}

/**
 * The stream stage that drops the changes of transactions whose Origin message names one of
 * `skip`: their Begin and Commit still pass (the position moves on, nothing is applied), and so do
 * Relation and Type messages (pgoutput sends a relation's description once per stream, and later
 * transactions rely on it). Needs transactions whole: streaming of in-progress transactions is
 * off whenever origins are skipped (their changes carry subtransaction ids, their origin only the
 * first block). Stateful, in stream order; the message itself, or undefined to drop it.
 */
export function originFilter(skip: readonly string[] | undefined): (message: PgoutputMessage) => PgoutputMessage | undefined {
  const skipped = new Set(skip ?? []);
  let dropping = false;
  return (message) => {
    if (skipped.size === 0) return message;
    switch (message.tag) {
      case 'begin':
      case 'commit':
        dropping = false;
        return message;
      case 'origin':
        dropping = skipped.has(message.name);
        return message;
      case 'insert':
      case 'update':
      case 'delete':
      case 'truncate':
        return dropping ? undefined : message;
      case 'message':
        return dropping && message.transactional ? undefined : message;
      default:
        return message;
    }
  };
}

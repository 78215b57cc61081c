/**
 * Outages of a side: a server that is restarting, failing over or out of reach. A step that
 * meets one throws UnreachableError (`pgferry.Unreachable`), which the workflow retries with
 * backoff (state-machines/steps.ts) until `cdc.retryWindowMinutes` have passed since the state
 * was entered; past the window the step ends with OutageTooLongError as any failure does.
 */
import { PgferryError } from '../errors.js';
import { messageOf } from '../sql.js';

/** The error name the workflow retries: a side could not be reached, for now. */
export const UNREACHABLE = 'pgferry.Unreachable';

/** SQLSTATEs and socket errors that say the server is (for now) out of reach, not that the request was wrong. */
const connectionFailureCodes = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ETIMEDOUT',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'EAI_AGAIN',
  'EPIPE',
  '57P01', // admin_shutdown
  '57P02', // crash_shutdown
  '57P03', // cannot_connect_now
  '53300', // too_many_connections
  '08000',
  '08001',
  '08003',
  '08006',
]);

/** Whether an error means the server could not be reached or dropped the connection (worth trying again later). */
export function isConnectionFailure(error: unknown): boolean {
  if ((error as Error)?.name === UNREACHABLE || (error as Error)?.name === 'pgferry.Transient') return true;
  const code = (error as { code?: string })?.code;
  if (code && connectionFailureCodes.has(code)) return true;
  return /Connection terminated|timeout expired|not queryable|ECONNRESET|ECONNREFUSED|EPIPE/i.test(messageOf(error));
}

/** SQLSTATEs of a refused login: a password that was rotated since the secret was read gives one of them. */
export function isAuthenticationFailure(error: unknown): boolean {
  const code = (error as { code?: string })?.code;
  return code === '28P01' || code === '28000';
}

/** A side out of reach; the message names the side and its host, never a password. */
export class UnreachableError extends PgferryError {
  constructor(
    readonly side: string,
    message: string,
    readonly code?: string,
    options?: { cause?: unknown },
  ) {
    super(UNREACHABLE, message, options);
  }
}

/** A side that stayed out of reach for longer than cdc.retryWindowMinutes: the step gives up. */
export class OutageTooLongError extends PgferryError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('pgferry.ConnectionFailed', message, options);
  }
}

/**
 * What a step that failed with `error` ends with: an UnreachableError while the outage is within
 * the retry window (the workflow tries the step again), an OutageTooLongError once the state has
 * been retried for longer than `windowMinutes` since `since` (when it was entered); any other
 * error as it is.
 */
export function withinRetryWindow(error: unknown, since: Date | undefined, windowMinutes: number | undefined, now = Date.now()): unknown {
  if ((error as Error)?.name !== UNREACHABLE || !since || windowMinutes === undefined || Number.isNaN(since.getTime())) return error;
  const minutes = (now - since.getTime()) / 60_000;
  if (minutes <= windowMinutes) return error;
  return new OutageTooLongError(
    `${(error as Error).message} It has been retried for ${Math.round(minutes)} minute(s), longer than cdc.retryWindowMinutes (${windowMinutes}): ` +
      'bring the server back (or raise cdc.retryWindowMinutes), then continue with `pgferry resume SPEC`.',
    { cause: error },
  );
}

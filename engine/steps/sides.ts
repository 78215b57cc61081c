/**
 * What the Lambda steps share: connections to the two sides for the length of one step, and
 * the few facts about a run more than one step asks.
 */
import type pg from 'pg';
import { connectSide, isConnectionFailure, settleAll, UnreachableError, type SecretsProvider, type Side } from '../connect/index.js';
import { PgferryError } from '../errors.js';
import type { MigrationSpec } from '../spec/index.js';
import { messageOf } from '../sql.js';

/**
 * How long a step's connect retries a side that cannot be reached before the step fails with
 * pgferry.Unreachable: a blip costs no workflow retry, a longer outage is waited out by the
 * workflow's Retry (state-machines/steps.ts), within cdc.retryWindowMinutes.
 */
export const STEP_CONNECT_RETRY_MS = 10_000;

/** A connection of a step to one side. */
export function connectForStep(side: Side, spec: MigrationSpec, secrets: SecretsProvider): Promise<pg.Client> {
  return connectSide(side, spec[side], secrets, { applicationName: 'pgferry', retryWindowMs: STEP_CONNECT_RETRY_MS });
}

/**
 * Connects to the sides a step needs, runs `body`, and closes them, whatever happens. A side
 * lost during the step (restart, failover) ends it with an UnreachableError naming the side,
 * which the workflow retries.
 */
export async function withSides<T>(
  spec: MigrationSpec,
  secrets: SecretsProvider,
  sides: { source?: boolean; target?: boolean },
  body: (clients: { source: pg.Client; target: pg.Client }) => Promise<T>,
): Promise<T> {
  const clients: Partial<Record<Side, pg.Client>> = {};
  const lost: Side[] = [];
  const connectIf = async (side: Side) => {
    if (!sides[side]) return;
    // connectSide's clients fail their next query, instead of crashing the process, when the server ends an idle session.
    const client = (clients[side] = await connectForStep(side, spec, secrets));
    // Emitted as the connection drops, just before its queries fail.
    client.on('error', () => lost.push(side));
  };
  try {
    // Both at once; if one side cannot be reached, the other's connection is closed before the error goes on.
    await settleAll([connectIf('source'), connectIf('target')]);
    return await body(clients as { source: pg.Client; target: pg.Client });
  } catch (error) {
    if (error instanceof PgferryError || !isConnectionFailure(error)) throw error;
    throw lostSideError(error, lost, clients);
  } finally {
    await Promise.all(Object.values(clients).map((client) => client.end().catch(() => undefined)));
  }
}

/** The UnreachableError of a connection lost during a step: the side and its host, never a password. */
function lostSideError(error: unknown, lost: readonly Side[], clients: Partial<Record<Side, pg.Client>>): UnreachableError {
  const side = lost[0];
  const client = side ? (clients[side] as (pg.Client & { host?: string; port?: number; database?: string }) | undefined) : undefined;
  const where = side ? `the ${side}${client ? ` (${client.host}:${client.port}/${client.database})` : ''}` : 'the source or the target';
  return new UnreachableError(side ?? 'source or target', `Lost the connection to ${where} during the step: ${messageOf(error)}.`, (error as { code?: string }).code, {
    cause: error,
  });
}

/** Whether the run streams changes (and so has a slot and publication on the source). */
export const usesCdc = (spec: MigrationSpec) => spec.mode !== 'full';

/**
 * What the Lambda steps share: connections to the two sides for the length of one step, and
 * the few facts about a run more than one step asks.
 */
import type pg from 'pg';
import { connectSide, settleAll, type SecretsProvider, type Side } from '../connect/index.js';
import type { MigrationSpec } from '../spec/index.js';

/** Connects to the sides a step needs, runs `body`, and closes them, whatever happens. */
export async function withSides<T>(
  spec: MigrationSpec,
  secrets: SecretsProvider,
  sides: { source?: boolean; target?: boolean },
  body: (clients: { source: pg.Client; target: pg.Client }) => Promise<T>,
): Promise<T> {
  const clients: Partial<Record<Side, pg.Client>> = {};
  const connectIf = async (side: Side) => {
    if (!sides[side]) return;
    // connectSide's clients fail their next query, instead of crashing the process, when the server ends an idle session.
    clients[side] = await connectSide(side, spec[side], secrets, { applicationName: 'pgferry' });
  };
  try {
    // Both at once; if one side cannot be reached, the other's connection is closed before the error goes on.
    await settleAll([connectIf('source'), connectIf('target')]);
    return await body(clients as { source: pg.Client; target: pg.Client });
  } finally {
    await Promise.all(Object.values(clients).map((client) => client.end()));
  }
}

/** Whether the run streams changes (and so has a slot and publication on the source). */
export const usesCdc = (spec: MigrationSpec) => spec.mode !== 'full';

/** A session opened after a cutover fence starts read-only; pgferry's own cleanup of the source must still write. */
export const writeThroughFence = (source: pg.Client) => source.query('SET default_transaction_read_only = off');

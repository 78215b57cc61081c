/**
 * A full+cdc run through the local workflow, cut over by hand: the e2e tests' harness for what
 * must hold after cutover (filters, mapping). A run that pauses fails the test with its error and
 * events instead of waiting for a resume.
 */
import type pg from 'pg';
import { expect } from 'vitest';
import { readReplicationStatus, requestCutover } from '../../engine/control/index.js';
import type { LocalCluster } from '../../local/dev/cluster.js';
import { runLocalWorkflow, type LocalRunResult } from '../../local/runner/index.js';
import { waitFor } from './wait.js';

const WAIT_MS = 90_000;

/** The rows of a query, as objects. */
export async function rowsOf(cluster: LocalCluster, database: string, sql: string): Promise<unknown[]> {
  const [result] = (await cluster.sql(sql, database)) as [pg.QueryResult];
  return result.rows;
}

/** Runs the migration; once the comparison while replicating is done, `whileStreaming` runs, then cutover is requested; resolves with how the run ended. */
export async function runToCutover(
  spec: { name: string } & Record<string, unknown>,
  target: LocalCluster,
  database: string,
  whileStreaming: () => Promise<void>,
): Promise<LocalRunResult | undefined> {
  let result: LocalRunResult | undefined;
  void runLocalWorkflow(spec).then((r) => (result = r));
  const control = await target.connect(database);
  try {
    const notPaused = async () => {
      const [state] = (await target.sql(`SELECT phase, error FROM pgferry.migrations WHERE name = '${spec.name}'`, database).catch(() => [{ rows: [] }])) as [pg.QueryResult];
      if (state?.rows[0]?.phase !== 'paused') return;
      const events = (await rowsOf(target, database, `SELECT level, message FROM pgferry.events WHERE migration = '${spec.name}' ORDER BY id`)) as { level: string; message: string }[];
      throw new Error(`the run paused: ${state.rows[0].error}\n${events.map((e) => `${e.level}: ${e.message}`).join('\n')}`);
    };
    await waitFor(
      'the comparison while replicating',
      async () => {
        await notPaused();
        return result ?? (await readReplicationStatus(control, spec.name))?.liveCompared;
      },
      WAIT_MS,
      100,
    );
    expect(result, JSON.stringify(result)).toBeUndefined();
    await whileStreaming();
    await requestCutover(control, spec.name);
    await waitFor(
      'the run to end',
      async () => {
        await notPaused();
        return result;
      },
      WAIT_MS,
      100,
    );
  } finally {
    await control.end();
  }
  return result;
}

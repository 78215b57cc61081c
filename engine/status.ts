/**
 * A migration's status as `pgferry status` and the live progress show it, read from the
 * target's control schema: phase, load progress per table, CDC lag and apply rate, last error.
 */
import type pg from 'pg';
import { readReplicationStatus, requestCutover, type ReplicationStatusRow } from './cdc/state.js';
import { findMigration } from './control/index.js';
import type { MigrationSpec } from './spec/index.js';

export interface MigrationStatus {
  name: string;
  phase: string;
  error: string | null;
  tables: { table: string; unitsDone: number; units: number; rows: number; bytes: number }[];
  comparison?: { tables: number; matching: number; differing: string[] };
  replication?: ReplicationStatusRow;
}

export async function readMigrationStatus(target: pg.Client, name: string): Promise<MigrationStatus | undefined> {
  const state = await findMigration(target, name);
  if (!state) return undefined;
  const { rows } = await target.query(
    `SELECT source_schema || '.' || source_table AS table, count(*) FILTER (WHERE state = 'done')::int AS done, count(*)::int AS units,
            coalesce(sum(rows_copied), 0)::float8 AS rows, coalesce(sum(bytes_copied), 0)::float8 AS bytes
       FROM pgferry.units WHERE migration = $1 GROUP BY 1 ORDER BY 1`,
    [name],
  );
  const replication = await readReplicationStatus(target, name);
  const { rows: compared } = await target.query<{ table: string; status: string }>(
    `SELECT source_schema || '.' || source_table AS table, status FROM pgferry.comparisons WHERE migration = $1 ORDER BY 1`,
    [name],
  );
  return {
    name,
    phase: state.phase,
    error: state.error,
    tables: rows.map((r) => ({ table: r.table, unitsDone: r.done, units: r.units, rows: r.rows, bytes: r.bytes })),
    ...(replication ? { replication } : {}),
    ...(compared.length
      ? {
          comparison: {
            tables: compared.length,
            matching: compared.filter((c) => c.status === 'match').length,
            differing: compared.filter((c) => c.status !== 'match').map((c) => c.table),
          },
        }
      : {}),
  };
}

export type CutoverRequest = { requested: true; message: string } | { requested: false; reason: string };

/**
 * Asks a replicating migration to cut over (what `pgferry cutover` does, locally or through the
 * Operator function on AWS): the workflow's status loop sees the request at its next poll.
 */
export async function requestMigrationCutover(target: pg.Client, spec: MigrationSpec): Promise<CutoverRequest> {
  const state = await findMigration(target, spec.name);
  const replicating = state !== undefined && state.phase !== 'done' && state.phase !== 'failed' && (await readReplicationStatus(target, spec.name)) !== undefined;
  if (!replicating) {
    return {
      requested: false,
      reason: `Migration ${spec.name} is not replicating changes (phase: ${state?.phase ?? 'not started'}): there is nothing to cut over.`,
    };
  }
  await requestCutover(target, spec.name);
  return {
    requested: true,
    message:
      `Cutover requested for ${spec.name}: it starts once lag is under ${spec.cutover.maxLagSeconds} s` +
      `${spec.cutover.fenceSource ? ', makes the source read-only' : ''}, drains the remaining changes, then sets sequences and compares.`,
  };
}

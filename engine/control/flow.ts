/**
 * Flow control on the control schema (issue 15, item 3): the limits `pgferry throttle` sets for
 * a run (`pgferry.flow_limits`, per phase: NULL keeps the spec's, 0 lifts it) and the workers
 * that share them (`pgferry.flow_workers`: copy workers of the load, the CDC applier), each
 * registered while it runs and beating with the share it applies. engine/flow/ uses these.
 */
import type pg from 'pg';
import { limitInForce, sharedLimits, type FlowLimits } from '../flow/rate-limiter.js';
import { controlTableExists } from './schema.js';

/** The workers of a phase: the load's copy workers, or CDC's applier. */
export type FlowKind = 'load' | 'cdc';

/** A worker that has not beaten for this long no longer counts as running (it beats every second). */
export const FLOW_WORKER_STALE_SECONDS = 5;
/** Rows of workers that ended (or died) longer ago than this are removed when another registers. */
const FLOW_WORKER_KEEP = '1 hour';

/** A limit as `pgferry throttle` changes it: a number (0 lifts it), null (back to the spec's), undefined (unchanged). */
export type LimitChange = number | null | undefined;
export interface FlowLimitsChange {
  load?: { rowsPerSecond?: LimitChange; bytesPerSecond?: LimitChange };
  cdc?: { rowsPerSecond?: LimitChange; bytesPerSecond?: LimitChange };
}

/** What `pgferry throttle` set for a phase (null: the spec's; 0: none). */
export interface FlowOverride {
  rowsPerSecond: number | null;
  bytesPerSecond: number | null;
}

/** What a worker learns at a beat: the throttle's limits of its phase, and how many workers of its kind run (itself included). */
export interface FlowBeat {
  override: FlowOverride;
  workers: number;
}

const COLUMNS = {
  load: { rowsPerSecond: 'load_rows_per_second', bytesPerSecond: 'load_bytes_per_second' },
  cdc: { rowsPerSecond: 'cdc_rows_per_second', bytesPerSecond: 'cdc_bytes_per_second' },
} as const;

const toNumber = (value: string | number | null): number | null => (value === null ? null : Number(value));

/** Registers a worker (or marks it alive again), with the share it applies and the workers it divided by. */
export async function beatFlowWorker(control: pg.ClientBase, migration: string, worker: string, kind: FlowKind, share: FlowLimits, workers: number): Promise<void> {
  await control.query(
    `INSERT INTO pgferry.flow_workers (migration, worker, kind, workers, rows_per_second, bytes_per_second)
     VALUES ($1, $2, $3, $4, $5, $6)
     ON CONFLICT (migration, worker) DO UPDATE
        SET heartbeat_at = now(), stopped_at = NULL, workers = EXCLUDED.workers,
            rows_per_second = EXCLUDED.rows_per_second, bytes_per_second = EXCLUDED.bytes_per_second`,
    [migration, worker, kind, workers, share.rowsPerSecond ?? null, share.bytesPerSecond ?? null],
  );
}

/** Removes the rows of workers of the migration that ended or went silent long ago. */
export async function pruneFlowWorkers(control: pg.ClientBase, migration: string): Promise<void> {
  await control.query(`DELETE FROM pgferry.flow_workers WHERE migration = $1 AND heartbeat_at < now() - interval '${FLOW_WORKER_KEEP}'`, [migration]);
}

/** The throttle's limits of `kind` and the workers of that kind running, `worker` counted whether or not it is registered yet. */
export async function readFlowBeat(control: pg.ClientBase, migration: string, kind: FlowKind, worker: string): Promise<FlowBeat> {
  const columns = COLUMNS[kind];
  const { rows } = await control.query<{ rows: string | null; bytes: string | null; others: number }>(
    `SELECT l.${columns.rowsPerSecond} AS rows, l.${columns.bytesPerSecond} AS bytes,
            (SELECT count(*)::int FROM pgferry.flow_workers w
              WHERE w.migration = $1 AND w.kind = $2 AND w.worker <> $3 AND w.stopped_at IS NULL
                AND w.heartbeat_at > now() - make_interval(secs => $4)) AS others
       FROM (SELECT) one LEFT JOIN pgferry.flow_limits l ON l.migration = $1`,
    [migration, kind, worker, FLOW_WORKER_STALE_SECONDS],
  );
  const row = rows[0]!;
  return { override: { rowsPerSecond: toNumber(row.rows), bytesPerSecond: toNumber(row.bytes) }, workers: row.others + 1 };
}

/** Marks a worker ended; its row stays (for status and the tests: the share it applied last) until pruned. */
export async function stopFlowWorker(control: pg.ClientBase, migration: string, worker: string): Promise<void> {
  await control.query('UPDATE pgferry.flow_workers SET stopped_at = now() WHERE migration = $1 AND worker = $2', [migration, worker]);
}

/** Writes what `pgferry throttle` changed; the limits it leaves alone stay as they were. */
export async function setFlowLimits(control: pg.ClientBase, migration: string, change: FlowLimitsChange): Promise<void> {
  const values: (number | null)[] = [];
  const given: boolean[] = [];
  for (const kind of ['load', 'cdc'] as const) {
    for (const limit of ['rowsPerSecond', 'bytesPerSecond'] as const) {
      const value = change[kind]?.[limit];
      values.push(value ?? null);
      given.push(value !== undefined);
    }
  }
  const names = [...Object.values(COLUMNS.load), ...Object.values(COLUMNS.cdc)];
  await control.query(
    `INSERT INTO pgferry.flow_limits (migration, ${names.join(', ')}) VALUES ($1, $2, $3, $4, $5)
     ON CONFLICT (migration) DO UPDATE SET changed_at = now(),
       ${names.map((name, i) => `${name} = CASE WHEN $${i + 6} THEN EXCLUDED.${name} ELSE flow_limits.${name} END`).join(',\n       ')}`,
    [migration, ...values, ...given],
  );
}

/** A phase's limits as status shows them. */
export interface FlowPhaseStatus {
  /** The limits in force for the whole phase (the spec's, or what pgferry throttle set); undefined: none. */
  limits: FlowLimits;
  /** Whether pgferry throttle changed one of them. */
  throttled: boolean;
  /** The workers of the phase running now, and the share each applies. */
  workers: number;
  share: FlowLimits;
}

export interface FlowStatus {
  load: FlowPhaseStatus;
  cdc: FlowPhaseStatus;
  /** When pgferry throttle last changed a limit. */
  changedAt: Date | null;
}

/** The limits in force for the migration and the workers sharing them; undefined for a control schema without flow control. */
export async function readFlowStatus(control: pg.ClientBase, migration: string): Promise<FlowStatus | undefined> {
  if (!(await controlTableExists(control, 'flow_limits'))) return undefined;
  const { rows } = await control.query<Record<string, string | number | null> & { changed_at: Date | null }>(
    `SELECT (m.spec #>> '{fullLoad,maxRowsPerSecond}')::float8 AS spec_load_rows, (m.spec #>> '{fullLoad,maxBytesPerSecond}')::float8 AS spec_load_bytes,
            (m.spec #>> '{cdc,maxRowsPerSecond}')::float8 AS spec_cdc_rows, (m.spec #>> '{cdc,maxBytesPerSecond}')::float8 AS spec_cdc_bytes,
            l.load_rows_per_second, l.load_bytes_per_second, l.cdc_rows_per_second, l.cdc_bytes_per_second, l.changed_at,
            (SELECT count(*) FROM pgferry.flow_workers w WHERE w.migration = m.name AND w.kind = 'load' AND w.stopped_at IS NULL
                AND w.heartbeat_at > now() - make_interval(secs => $2))::int AS load_workers,
            (SELECT count(*) FROM pgferry.flow_workers w WHERE w.migration = m.name AND w.kind = 'cdc' AND w.stopped_at IS NULL
                AND w.heartbeat_at > now() - make_interval(secs => $2))::int AS cdc_workers
       FROM pgferry.migrations m LEFT JOIN pgferry.flow_limits l ON l.migration = m.name
      WHERE m.name = $1`,
    [migration, FLOW_WORKER_STALE_SECONDS],
  );
  const row = rows[0];
  if (!row) return undefined;
  const phase = (kind: FlowKind, specPrefix: string): FlowPhaseStatus => {
    const override = { rows: toNumber(row[COLUMNS[kind].rowsPerSecond] as string | null), bytes: toNumber(row[COLUMNS[kind].bytesPerSecond] as string | null) };
    const limits = {
      rowsPerSecond: limitInForce(toNumber(row[`${specPrefix}_rows`] as number | null) ?? undefined, override.rows),
      bytesPerSecond: limitInForce(toNumber(row[`${specPrefix}_bytes`] as number | null) ?? undefined, override.bytes),
    };
    const workers = Number(row[`${kind}_workers`]);
    return {
      limits,
      throttled: override.rows !== null || override.bytes !== null,
      workers,
      share: sharedLimits(limits, workers),
    };
  };
  return { load: phase('load', 'spec_load'), cdc: phase('cdc', 'spec_cdc'), changedAt: row.changed_at };
}

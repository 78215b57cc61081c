/**
 * The heartbeat of a local run's runner on `pgferry.migrations` (`runner_*` columns): the
 * process that runs the workflow (`pgferry run`) beats while it runs, so that `status` and
 * `cutover` can tell a run whose runner is gone. An execution on AWS has no runner: its
 * liveness is the execution's status.
 */
import type pg from 'pg';
import { controlSchemaExists } from './schema.js';

/** How often a runner beats. */
export const RUNNER_HEARTBEAT_MS = 5_000;
/** A runner silent for longer than this is gone, wherever it ran. */
export const RUNNER_GONE_AFTER_SECONDS = 30;

/** Where a runner runs: its process id and host name. */
export interface RunnerProcess {
  pid: number;
  host: string;
}

/** Beats for the run `execution` of migration `name`; false while no such run is registered (nothing written). */
export async function recordRunnerHeartbeat(client: pg.Client, name: string, execution: string, runner: RunnerProcess): Promise<boolean> {
  const { rowCount } = await client.query(
    'UPDATE pgferry.migrations SET runner_heartbeat_at = now(), runner_pid = $3, runner_host = $4 WHERE name = $1 AND execution = $2',
    [name, execution, runner.pid, runner.host],
  );
  return rowCount === 1;
}

/** A run's last runner heartbeat, as status and cutover judge it. */
export interface RunnerBeat {
  execution: string | null;
  phase: string;
  pid: number | null;
  host: string | null;
  /** null: the runner never beat (it has not yet, or it ran before runners beat). */
  heartbeatAt: Date | null;
  ageSeconds: number | null;
}

/** The last heartbeat of the migration's runner; undefined when it is not registered. */
export async function readRunnerBeat(client: pg.Client, name: string): Promise<RunnerBeat | undefined> {
  if (!(await controlSchemaExists(client))) return undefined;
  // Through to_jsonb: a control schema created before runners beat has no runner_* columns.
  const { rows } = await client.query(
    `SELECT m.execution, m.phase, (j->>'runner_pid')::int AS pid, j->>'runner_host' AS host,
            (j->>'runner_heartbeat_at')::timestamptz AS heartbeat_at,
            extract(epoch FROM clock_timestamp() - (j->>'runner_heartbeat_at')::timestamptz)::float8 AS age
       FROM pgferry.migrations m, to_jsonb(m) j
      WHERE m.name = $1`,
    [name],
  );
  const row = rows[0];
  return row && { execution: row.execution, phase: row.phase, pid: row.pid, host: row.host, heartbeatAt: row.heartbeat_at, ageSeconds: row.age };
}

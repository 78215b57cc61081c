/**
 * ReplicationStatus: says what the workflow's CDC loop does next. The decision is a pure
 * function of the spec and the status row (replicationDecision); the step reads the row, and
 * while the answer is "wait", reads it again.
 */
import type pg from 'pg';
import { ReplicationFailedError } from '../cdc/replicator.js';
import { readReplicationStatus, type ReplicationStatusRow } from '../control/index.js';
import type { SecretsProvider } from '../connect/index.js';
import { migrationState } from '../control/index.js';
import { alertsOf, type AlertSink, type MigrationAlerts } from '../alerts/index.js';
import { lagAlert, lagResolvedAlert } from '../alerts/messages.js';
import { PgferryError } from '../errors.js';
import type { MigrationSpec } from '../spec/index.js';
import { sleep } from '../sql.js';
import { withSides } from './sides.js';

export type ReplicationAction = 'wait' | 'restart' | 'compare' | 'cutover' | 'drained';

/** The action, with the figures the workflow shows. */
export interface ReplicationDecision {
  action: ReplicationAction;
  lagSeconds: number | null;
  lagBytes: number | null;
  heartbeatAgeSeconds: number | null;
  appliedLsn: string | null;
  rowsApplied: number;
  restarts: number;
  cutoverRequested: boolean;
  /** Cutover is draining to its LSN. */
  draining: boolean;
}

type DecisionSpec = Pick<MigrationSpec, 'name' | 'cdc' | 'cutover' | 'compare'>;

/**
 * What the CDC loop does next, from the status row alone: finish once drained; fail when the
 * streamer recorded an error or has been silent longer than the retry window; restart a
 * streamer whose heartbeat is overdue; wait while cutover drains; compare once caught up (if
 * the spec compares and it has not yet); once cutover is due, compare once more what changed
 * since (with cutover.finalCompare, so that little is left for the comparison behind the
 * fence); cut over once caught up, automatically or on request.
 * Throws ReplicationFailedError when replication cannot go on.
 */
export function replicationDecision(spec: DecisionSpec, status: ReplicationStatusRow | undefined): ReplicationDecision {
  if (!status) throw new ReplicationFailedError(`Migration ${spec.name} has no replication registered in the target's control schema.`);
  if (status.lastError) throw new ReplicationFailedError(`Change data capture stopped: ${status.lastError}`);
  const action = (a: ReplicationAction): ReplicationDecision => ({
    action: a,
    lagSeconds: status.lagSeconds,
    lagBytes: status.lagBytes,
    heartbeatAgeSeconds: status.heartbeatAgeSeconds,
    appliedLsn: status.appliedLsn,
    rowsApplied: status.rowsApplied,
    restarts: status.restarts,
    cutoverRequested: status.cutoverRequested,
    draining: status.drainLsn !== null && !status.drained,
  });
  if (status.drained) return action('drained');
  const windowSeconds = spec.cdc.retryWindowMinutes * 60;
  if ((status.unhealthySeconds ?? 0) > windowSeconds) {
    throw new ReplicationFailedError(
      `The CDC streamer has not reported for ${Math.round(status.unhealthySeconds! / 60)} minute(s), longer than cdc.retryWindowMinutes (${spec.cdc.retryWindowMinutes}); see its log for the reason.`,
    );
  }
  if (status.heartbeatAgeSeconds === null || status.heartbeatAgeSeconds > spec.cdc.heartbeatTimeoutSeconds) return action('restart');
  if (status.drainLsn !== null) return action('wait');
  const streaming = status.streamingSince !== null && status.lagSeconds !== null;
  const caughtUp = streaming && status.lagSeconds! <= spec.cutover.maxLagSeconds;
  if (caughtUp && spec.compare.enabled && !status.liveCompared) return action('compare');
  const cutoverDue = spec.cutover.mode === 'auto' || status.cutoverRequested;
  const changesToCompare = spec.compare.enabled && spec.cutover.finalCompare && status.changesSinceLiveCompare && !status.incrementalCompared;
  if (caughtUp && cutoverDue && changesToCompare) return action('compare');
  // The passes at the cutover request began caught up; the lag they left behind (the applier
  // shared the machine with them) is drained behind the fence at the applier's full speed. Waiting
  // for it under load would shrink it only by the applier's headroom while every second adds
  // changed rows to the comparison behind the fence.
  const lagAllowed = spec.cutover.maxLagSeconds + (status.incrementalCompared ? (status.incrementalCompareSeconds ?? 0) : 0);
  if (streaming && status.lagSeconds! <= lagAllowed && cutoverDue) return action('cutover');
  return action('wait');
}

/**
 * How often replicationStatusStep looks again while it waits. Once cutover is requested every
 * second of waiting adds changed rows for the comparison behind the fence, and while cutover
 * drains applications cannot write: then it looks often.
 */
const STATUS_POLL_MS = 2_000;
const CUTOVER_REQUESTED_POLL_MS = 200;
const DRAINING_POLL_MS = 100;

/**
 * While the answer is "wait" it looks again every 2 s for up to `waitUpToSeconds`: each turn
 * of the loop costs the execution about nine history events, and a Standard execution ends at
 * 25,000, so on AWS one turn must span minutes, not seconds (at 14 minutes a turn, about 27
 * days of replication).
 */
export async function replicationStatusStep(
  spec: MigrationSpec,
  secrets: SecretsProvider,
  { waitUpToSeconds = 0, alertSink }: { waitUpToSeconds?: number; alertSink?: AlertSink } = {},
) {
  const deadline = Date.now() + waitUpToSeconds * 1000;
  const alerts = alertsOf(spec, alertSink);
  return withSides(spec, secrets, { target: true }, async ({ target }) => {
    let decision = await decide(spec, target, { alerts });
    for (;;) {
      const poll = decision.draining ? DRAINING_POLL_MS : decision.cutoverRequested ? CUTOVER_REQUESTED_POLL_MS : STATUS_POLL_MS;
      if (decision.action !== 'wait' || Date.now() + poll > deadline) break;
      await sleep(poll);
      try {
        decision = await decide(spec, target, { waiting: true, alerts });
      } catch (error) {
        // The target went away while we waited (failover, restart): answer "wait"; the next
        // turn of the loop connects again, within the retry window.
        if (error instanceof PgferryError) throw error;
        return decision;
      }
    }
    return decision;
  });
}

/** The decision, unless the run was paused (pgferry stop: the loop ends, and the run waits in its paused loop), or, `waiting`, it ended meanwhile. */
async function decide(spec: MigrationSpec, target: pg.Client, { waiting = false, alerts }: { waiting?: boolean; alerts?: MigrationAlerts } = {}): Promise<ReplicationDecision> {
  const state = await migrationState(target, spec.name);
  const phase = state?.phase;
  if (phase === 'paused') throw new ReplicationFailedError(`Migration ${spec.name} was paused: ${state!.error ?? 'pgferry stop'}`);
  if (waiting && (phase === 'failed' || phase === 'done' || phase === undefined)) {
    throw new ReplicationFailedError(`Migration ${spec.name} ${phase ? 'was marked failed' : 'is no longer registered'} while its CDC loop waited.`);
  }
  const decision = replicationDecision(spec, await readReplicationStatus(target, spec.name));
  if (alerts) await alertLag(spec, target, alerts, decision);
  return decision;
}

/**
 * Raises the lag alert once the lag is over alerts.lagThresholdSeconds, and resolves it once it
 * is back under. Only on a fresh heartbeat: a silent streamer's last lag is no current figure
 * (the workflow restarts it, and past the retry window the run pauses, which is alerted).
 */
async function alertLag(spec: MigrationSpec, target: pg.Client, alerts: MigrationAlerts, decision: ReplicationDecision): Promise<void> {
  const { lagSeconds, heartbeatAgeSeconds } = decision;
  if (lagSeconds === null || heartbeatAgeSeconds === null || heartbeatAgeSeconds > spec.cdc.heartbeatTimeoutSeconds) return;
  const figures = { lagSeconds, lagBytes: decision.lagBytes, appliedLsn: decision.appliedLsn, rowsApplied: decision.rowsApplied };
  if (lagSeconds > spec.alerts.lagThresholdSeconds) await alerts.raise(target, 'lag', lagAlert(spec, figures));
  else await alerts.resolve(target, 'lag', lagResolvedAlert(spec, figures));
}

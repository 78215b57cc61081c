/**
 * PausedStatus: the paused run's loop. It waits while the run is paused, measuring the WAL its
 * slot holds back (the alarm and the opt-in drop of cdc.dropSlotAboveMaxRetainedWal hold while
 * paused too), and ends the loop when the run is resumed by another execution (`pgferry resume`
 * starts one, which takes the run over) or abandoned (`pgferry stop --drop`).
 */
import type pg from 'pg';
import { checkRetainedWal, dropSlotOverRetainedWal, RetainedWalExceededError, type RetainedWalReading } from '../cdc/retained-wal.js';
import { RETAINED_WAL_INTERVAL_MS } from '../cdc/heartbeat.js';
import { replicationNames } from '../cdc/slot.js';
import type { AlertSink } from '../alerts/index.js';
import type { SecretsProvider } from '../connect/index.js';
import { migrationState } from '../control/index.js';
import type { MigrationSpec } from '../spec/index.js';
import { sleep } from '../sql.js';
import { retainedWalCheckOf } from './retained-wal.js';
import { usesCdc, withSides } from './sides.js';

export type PausedAction = 'wait' | 'handed-over' | 'abandoned';

export interface PausedStatus {
  action: PausedAction;
  /** Why the run paused (or how it ended). */
  cause: string;
  /** The WAL the slot holds back, as last measured (null: not measured). */
  retainedWalBytes: number | null;
}

export interface PausedStatusOptions {
  /** The execution whose loop asks. */
  execution: string;
  /** How long it looks again while the answer is "wait" (see replicationStatusStep). */
  waitUpToSeconds?: number;
  /** Told each retained-WAL reading (metrics). */
  onRetainedWal?: (reading: RetainedWalReading) => void;
  /** Where the retained-WAL alerts of alerts.snsTopicArn go (SNS on AWS); without one they are only recorded as events. */
  alertSink?: AlertSink;
}

const POLL_MS = 2_000;

export async function pausedStatusStep(spec: MigrationSpec, secrets: SecretsProvider, options: PausedStatusOptions): Promise<PausedStatus> {
  const deadline = Date.now() + (options.waitUpToSeconds ?? 0) * 1000;
  let status: PausedStatus = { action: 'wait', cause: '', retainedWalBytes: null };
  try {
    await withSides(spec, secrets, { target: true, source: usesCdc(spec) }, async ({ source, target }) => {
      let measuredAt = 0;
      for (;;) {
        if (usesCdc(spec) && Date.now() - measuredAt >= RETAINED_WAL_INTERVAL_MS) {
          measuredAt = Date.now();
          status.retainedWalBytes = await measure(spec, source, target, options);
        }
        status = { ...(await decide(spec, target, options.execution)), retainedWalBytes: status.retainedWalBytes };
        if (status.action !== 'wait' || Date.now() + POLL_MS > deadline) return;
        await sleep(POLL_MS);
      }
    });
  } catch {
    // A side is out of reach: the run stays paused; the next turn of the loop looks again.
  }
  return status;
}

async function decide(spec: MigrationSpec, target: pg.Client, execution: string): Promise<Omit<PausedStatus, 'retainedWalBytes'>> {
  const state = await migrationState(target, spec.name);
  if (!state || state.execution !== execution) {
    return { action: 'handed-over', cause: `Migration ${spec.name} was resumed by ${state?.execution ?? 'another run'}, which goes on with it.` };
  }
  if (state.phase === 'failed' || state.phase === 'done') {
    return { action: 'abandoned', cause: `Migration ${spec.name} was abandoned while paused: ${state.error ?? 'no cause recorded'}` };
  }
  return { action: 'wait', cause: state.error ?? '' };
}

/** Measures and records the retained WAL; drops the slot (failing the run) only when the spec asked for it. */
async function measure(spec: MigrationSpec, source: pg.Client, target: pg.Client, { onRetainedWal, alertSink }: PausedStatusOptions): Promise<number | null> {
  try {
    return (await checkRetainedWal(source, target, retainedWalCheckOf({ migration: spec.name, spec, alertSink }, onRetainedWal))).bytes;
  } catch (error) {
    if (!(error instanceof RetainedWalExceededError)) return null;
    await dropSlotOverRetainedWal(source, target, { migration: spec.name, ...replicationNames(spec) }, error);
    return null;
  }
}

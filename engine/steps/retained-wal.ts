/**
 * The replicate task's watch over the WAL its slot holds back on the source
 * (engine/cdc/retained-wal.ts), from the spec: while it holds the snapshot for the load and
 * waits for BeginApply (RetainedWalWatch), during CDC (the streamer's heartbeat, given
 * retainedWalOptions), and what happens when the spec asked to drop the slot above
 * cdc.maxRetainedWal (abandonSlotOverRetainedWal).
 */
import type pg from 'pg';
import { RETAINED_WAL_INTERVAL_MS } from '../cdc/heartbeat.js';
import {
  checkRetainedWal,
  dropSlotOverRetainedWal,
  RetainedWalExceededError,
  type RetainedWalCheck,
  type RetainedWalReading,
} from '../cdc/retained-wal.js';
import { replicationNames } from '../cdc/slot.js';
import { alertsOf, type AlertSink } from '../alerts/index.js';
import { retainedWalAlert, retainedWalResolvedAlert } from '../alerts/messages.js';
import type { MigrationSpec } from '../spec/index.js';
import { messageOf } from '../sql.js';
import type { TaskStepContext } from './task.js';

/**
 * What the spec asks of the slot's retained WAL, for checkRetainedWal (without the migration and
 * slot); with alerts.snsTopicArn, its crossings of the threshold are alerted (to `alertSink`).
 */
export function retainedWalOptions(
  spec: Pick<MigrationSpec, 'name' | 'mode' | 'cdc' | 'alerts'>,
  onReading?: (reading: RetainedWalReading) => void,
  alertSink?: AlertSink,
  log?: (message: string) => void,
) {
  const alert = retainedWalAlerting(spec, alertSink, log);
  return {
    ...(spec.cdc.maxRetainedWal !== undefined ? { maxRetainedWalBytes: spec.cdc.maxRetainedWal } : {}),
    dropSlotAboveMaxRetainedWal: spec.cdc.dropSlotAboveMaxRetainedWal,
    ...(onReading ? { onReading } : {}),
    ...(alert ? { alert } : {}),
  };
}

/** The migration's check of its slot, from the spec. */
export function retainedWalCheckOf(
  { migration, spec, alertSink, log }: Pick<TaskStepContext, 'migration' | 'spec'> & Partial<Pick<TaskStepContext, 'alertSink' | 'log'>>,
  onReading?: (reading: RetainedWalReading) => void,
): RetainedWalCheck {
  return { migration, slotName: replicationNames(spec).slotName, ...retainedWalOptions(spec, onReading, alertSink, log) };
}

/** The retained-WAL alert (over the threshold, lost; resolved once back under), or undefined without an alert topic. */
function retainedWalAlerting(spec: Pick<MigrationSpec, 'name' | 'mode' | 'cdc' | 'alerts'>, sink?: AlertSink, log?: (message: string) => void): RetainedWalCheck['alert'] {
  const alerts = alertsOf(spec, sink, log);
  if (!alerts) return undefined;
  return (control, reading) =>
    reading.state === 'ok'
      ? alerts.resolve(control, 'retained-wal', retainedWalResolvedAlert(spec, reading))
      : alerts.raise(control, 'retained-wal', retainedWalAlert(spec, reading, reading.state, spec.cdc.maxRetainedWal));
}

/**
 * Measures the slot's retained WAL at most every `intervalMs` while a task waits (the load,
 * post-data), each time on a fresh source session: one that sat idle through a long load could
 * have been dropped by the network. A failure to measure is logged, never fatal; a
 * RetainedWalExceededError is thrown (the spec asked to drop the slot).
 */
export class RetainedWalWatch {
  private last: number | undefined;
  private readonly check: RetainedWalCheck;

  constructor(
    private readonly context: TaskStepContext,
    private readonly control: pg.Client,
    onReading?: (reading: RetainedWalReading) => void,
    private readonly intervalMs = RETAINED_WAL_INTERVAL_MS,
  ) {
    this.check = retainedWalCheckOf(context, onReading);
  }

  async maybeCheck(): Promise<void> {
    if (this.last !== undefined && Date.now() - this.last < this.intervalMs) return;
    this.last = Date.now();
    let source: pg.Client | undefined;
    try {
      source = await this.context.connectSource();
      await checkRetainedWal(source, this.control, this.check);
    } catch (error) {
      if (error instanceof RetainedWalExceededError) throw error;
      this.context.log(`could not measure the WAL replication slot ${this.check.slotName} holds back: ${messageOf(error)}`);
    } finally {
      await source?.end().catch(() => undefined);
    }
  }
}

/**
 * Rethrows `error`; a RetainedWalExceededError first drops the slot and publication and marks
 * the migration failed (the caller no longer uses the slot). Only ever reached when the spec
 * set cdc.dropSlotAboveMaxRetainedWal.
 */
export async function abandonSlotOverRetainedWal(context: TaskStepContext, error: unknown): Promise<never> {
  if (!(error instanceof RetainedWalExceededError)) throw error;
  const { slotName, publicationName } = replicationNames(context.spec);
  const source = await context.connectSource();
  const control = await context.connectTarget();
  try {
    await dropSlotOverRetainedWal(source, control, { migration: context.migration, slotName, publicationName }, error);
    context.log(error.message);
  } catch (dropFailed) {
    throw new RetainedWalExceededError(`${error.message} Dropping it failed (${messageOf(dropFailed)}): drop it with "pgferry stop SPEC --drop".`);
  } finally {
    await Promise.all([source.end().catch(() => undefined), control.end().catch(() => undefined)]);
  }
  throw error;
}

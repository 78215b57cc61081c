/**
 * A worker's flow control (issue 15, item 3): a copy worker of the full load or the CDC applier
 * registers in the target's control schema (engine/control/flow.ts) while it runs and, every
 * second, reads the limits in force (the spec's, or what `pgferry throttle` set since) and how
 * many workers of its kind are running, and applies its share: the limit divided by those
 * workers. It accounts what it moved and waits when it is ahead (rate-limiter.ts).
 */
import { hostname } from 'node:os';
import { randomUUID } from 'node:crypto';
import type pg from 'pg';
import { beatFlowWorker, pruneFlowWorkers, readFlowBeat, stopFlowWorker, type FlowKind } from '../control/flow.js';
import { messageOf, sleep } from '../sql.js';
import { limitInForce, Pace, sharedLimits, type FlowLimits } from './rate-limiter.js';

export type { FlowLimits } from './rate-limiter.js';

/** Waits shorter than this are not slept (timers are not that precise); what is due carries over. */
const MIN_WAIT_MS = 10;
/** A wait is slept in slices of at most this, so a raised limit or a worker gone applies at once. */
const WAIT_SLICE_MS = 1000;

export interface FlowControlOptions {
  migration: string;
  kind: FlowKind;
  /** The spec's limits of the phase (fullLoad.* or cdc.*PerSecond); pgferry throttle may change them. */
  limits: FlowLimits;
  /** A session on the target's control schema (queries queue behind the worker's own on it). */
  control: pg.ClientBase;
  log?: (message: string) => void;
  /** How often the worker beats and reads the limits; default 1000 ms. */
  refreshMs?: number;
  /** The clock of the rate arithmetic (tests). */
  now?: () => number;
}

export class FlowControl {
  /** This worker's name in `pgferry.flow_workers`. */
  readonly worker = `${hostname()}:${process.pid}:${randomUUID().slice(0, 8)}`;
  private readonly pace: Pace;
  /** Until the first beat has read the workers running (or if it fails): the whole limit. */
  private share: FlowLimits;
  private workerCount = 1;
  private timer: NodeJS.Timeout | undefined;
  private beating: Promise<void> | undefined;
  private failing = false;

  private constructor(private readonly options: FlowControlOptions) {
    this.pace = new Pace(options.now);
    this.share = options.limits;
  }

  /** Registers the worker and reads its share before it moves anything; it then beats every `refreshMs`. */
  static async start(options: FlowControlOptions): Promise<FlowControl> {
    const flow = new FlowControl(options);
    // Housekeeping only: a failure here is the first beat's to report.
    await pruneFlowWorkers(options.control, options.migration).catch(() => undefined);
    await flow.refresh();
    flow.timer = setInterval(() => void flow.refresh(), options.refreshMs ?? 1000);
    flow.timer.unref();
    return flow;
  }

  /** The share this worker applies now (undefined: no limit). */
  get limits(): FlowLimits {
    return this.share;
  }

  /** How many workers of its kind ran at the last beat, itself included. */
  get workers(): number {
    return this.workerCount;
  }

  /**
   * Reads the limits in force and the workers running, and beats with the share that follows.
   * A failure keeps the share it had (a control session lost is the worker's own failure to
   * report, not flow control's); it is logged once.
   */
  refresh(): Promise<void> {
    this.beating ??= this.beat().finally(() => (this.beating = undefined));
    return this.beating;
  }

  private async beat(): Promise<void> {
    const { control, migration, kind, limits, log } = this.options;
    try {
      const { override, workers } = await readFlowBeat(control, migration, kind, this.worker);
      const inForce = {
        rowsPerSecond: limitInForce(limits.rowsPerSecond, override.rowsPerSecond),
        bytesPerSecond: limitInForce(limits.bytesPerSecond, override.bytesPerSecond),
      };
      this.share = sharedLimits(inForce, workers);
      this.workerCount = workers;
      await beatFlowWorker(control, migration, this.worker, kind, this.share, workers);
      this.failing = false;
    } catch (error) {
      if (!this.failing) log?.(`flow control: cannot read the limits in force (${messageOf(error)}); keeping the share applied so far`);
      this.failing = true;
    }
  }

  /** Accounts rows and bytes moved; true when the worker is ahead of its share and must `wait()`. */
  account(rows: number, bytes: number): boolean {
    if (!this.share.rowsPerSecond && !this.share.bytesPerSecond) return false;
    return this.pace.take(rows, bytes, this.share) >= MIN_WAIT_MS;
  }

  /** Waits until what was accounted is due at the share in force (read again every slice). */
  async wait(signal?: AbortSignal): Promise<void> {
    for (let ms = this.pace.pending(this.share); ms >= MIN_WAIT_MS && !signal?.aborted; ms = this.pace.pending(this.share)) {
      await sleep(Math.min(ms, WAIT_SLICE_MS), signal);
    }
  }

  /** Accounts, then waits if ahead. */
  async paced(rows: number, bytes: number, signal?: AbortSignal): Promise<void> {
    if (this.account(rows, bytes)) await this.wait(signal);
  }

  /** Stops beating and marks the worker ended: the others' shares grow at their next beat. */
  async stop(): Promise<void> {
    clearInterval(this.timer);
    await this.beating;
    await stopFlowWorker(this.options.control, this.options.migration, this.worker).catch(() => undefined);
  }
}

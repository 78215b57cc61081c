/**
 * The streamer's heartbeat: every interval it measures lag against the source's WAL position,
 * writes it to the control schema (which also tells the workflow the streamer lives), tells an
 * observer (metrics), and reads back the workflow's request: stop (the migration ended or
 * failed) or drain to the cutover LSN, which ends the run once everything up to it is processed
 * (and, behind a fence, once the fence check found nothing past it: fence-check.ts).
 */
import type pg from 'pg';
import { markDrained, writeHeartbeat, type StreamerRequest } from '../control/checkpoint.js';
import { runHasStopped } from '../control/migrations.js';
import { currentWalLsn } from '../cutover/index.js';
import type { FenceCheck } from './fence-check.js';
import { formatLsn, parseLsn } from './pgoutput.js';
import type { StreamPosition } from './position.js';
import type { ReplicatorEnd, ReplicatorHeartbeat } from './replicator.js';

/** Lag as one heartbeat sees it. Pure. */
export function measureLag(input: {
  sourceLsn: bigint;
  processed: bigint;
  oldestPendingCommit: number | undefined;
  now: number;
}): { lagBytes: bigint; lagSeconds: number } {
  const { sourceLsn, processed, oldestPendingCommit, now } = input;
  return {
    lagBytes: sourceLsn > processed ? sourceLsn - processed : 0n,
    // Seconds since the oldest source commit received but not yet on the target.
    lagSeconds: oldestPendingCommit !== undefined ? Math.max(0, now - oldestPendingCommit) / 1000 : 0,
  };
}

/**
 * What the workflow's request means for the run, given how far it has processed: stop, drained
 * (everything up to the drain LSN is on the target), ask the server for a keepalive (draining
 * and nothing left to apply: its answer says whether it has read up to the drain LSN), or go on
 * (undefined). Pure.
 */
export function streamerDecision(request: StreamerRequest | undefined, processed: bigint): 'stopped' | 'drained' | 'keepalive' | undefined {
  // A paused run streams no more: its resume starts a new streamer from the checkpoint.
  if (!request || runHasStopped(request.phase)) return 'stopped';
  if (request.drainLsn && processed >= parseLsn(request.drainLsn)) return 'drained';
  if (request.drainLsn) return 'keepalive';
  return undefined;
}

export interface HeartbeatDeps {
  migration: string;
  /** Connections for the control schema (target) and the source's WAL position. */
  control: pg.Client;
  source: pg.Client;
  position: StreamPosition;
  /** Rows committed by the main session, and by all sessions (early apply included). */
  mainRows: () => number;
  allRows: () => number;
  requestKeepalive: () => void;
  /** Told once, after the first heartbeat is written: the run is healthy. */
  healthy: () => void;
  onHeartbeat?: (beat: ReplicatorHeartbeat) => void;
  log: (message: string) => void;
  /** Measures and records the WAL the slot holds back (retained-wal.ts); at most every `retainedWalIntervalMs`. */
  checkRetainedWal?: () => Promise<void>;
  retainedWalIntervalMs?: number;
  /** After the drain of a fenced cutover, reads on past the drain point until the fence is certainly in force. */
  fenceCheck?: FenceCheck;
}

/** The slot's retained WAL is measured at most this often by default: it changes slowly. */
export const RETAINED_WAL_INTERVAL_MS = 30_000;

/** While a cutover is requested the streamer beats this often: it finds the drain point and reports the drain sooner, inside the write-unavailable window. */
export const CUTOVER_HEARTBEAT_MS = 100;

export class Heartbeat {
  /** A cutover was requested (as of the last beat): beat every CUTOVER_HEARTBEAT_MS. */
  cutoverRequested = false;
  private lastRows = 0;
  private lastObservedRows = 0;
  private lastBeat = Date.now();
  private healthyReported = false;
  private lastRetainedWalCheck: number | undefined;

  constructor(private readonly deps: HeartbeatDeps) {}

  /** One heartbeat; how the run ends, or undefined to go on. */
  async beat(): Promise<ReplicatorEnd | undefined> {
    const { deps } = this;
    const { position } = deps;
    const sourceLsn = parseLsn(await currentWalLsn(deps.source));
    position.sourceLsn = sourceLsn;
    const now = Date.now();
    const { lagBytes, lagSeconds } = measureLag({ sourceLsn, processed: position.processed, oldestPendingCommit: position.oldestPendingCommit, now });
    const rowsPerSecond = ((deps.mainRows() - this.lastRows) * 1000) / Math.max(1, now - this.lastBeat);
    this.lastRows = deps.mainRows();
    this.lastBeat = now;
    const request = await writeHeartbeat(deps.control, deps.migration, {
      receivedLsn: formatLsn(position.received),
      processedLsn: formatLsn(position.processed),
      sourceLsn: formatLsn(sourceLsn),
      lagBytes,
      lagSeconds,
      rowsPerSecond,
    });
    if (!this.healthyReported) {
      this.healthyReported = true;
      deps.healthy();
    }
    this.observe({ lagSeconds, lagBytes: Number(lagBytes), sourceLsn: formatLsn(sourceLsn), processedLsn: formatLsn(position.processed) });
    await this.checkRetainedWalIfDue(now);
    this.cutoverRequested = Boolean(request?.cutoverRequested || request?.drainLsn);
    let decision = streamerDecision(request, position.processed);
    if (decision === 'drained' && request!.fenced && deps.fenceCheck) {
      decision = (await deps.fenceCheck.step(parseLsn(request!.drainLsn!))) ?? 'keepalive';
    }
    if (decision === 'drained') {
      await markDrained(deps.control, deps.migration);
      deps.log(`drained to ${request!.drainLsn} (applied ${formatLsn(position.applied)})`);
    }
    if (decision === 'keepalive') deps.requestKeepalive();
    return decision === 'keepalive' ? undefined : decision;
  }

  private async checkRetainedWalIfDue(now: number): Promise<void> {
    const { checkRetainedWal, retainedWalIntervalMs = RETAINED_WAL_INTERVAL_MS } = this.deps;
    if (!checkRetainedWal) return;
    if (this.lastRetainedWalCheck !== undefined && now - this.lastRetainedWalCheck < retainedWalIntervalMs) return;
    this.lastRetainedWalCheck = now;
    await checkRetainedWal();
  }

  private observe(beat: Omit<ReplicatorHeartbeat, 'rowsApplied'>): void {
    const { onHeartbeat, allRows } = this.deps;
    if (!onHeartbeat) return;
    const appliedRows = allRows();
    try {
      onHeartbeat({ ...beat, rowsApplied: appliedRows - this.lastObservedRows });
    } catch {
      // An observer never stops replication.
    }
    this.lastObservedRows = appliedRows;
  }
}

/**
 * Beats every `intervalMs` (the next one after the previous finished; a function is asked each
 * time) until a beat ends the run, a beat fails (rejects), or `signal` aborts ('stopped').
 * `stop()` cancels the next beat.
 */
export function heartbeatLoop(
  beat: () => Promise<ReplicatorEnd | undefined>,
  intervalMs: number | (() => number),
  signal?: AbortSignal,
): { ended: Promise<ReplicatorEnd>; stop: () => void } {
  const interval = typeof intervalMs === 'function' ? intervalMs : () => intervalMs;
  let timer: NodeJS.Timeout | undefined;
  let onAbort: (() => void) | undefined;
  // The signal lives as long as the task and a loop starts at every reconnect: its listener must go with the loop.
  const forgetSignal = () => onAbort && signal?.removeEventListener('abort', onAbort);
  const ended = new Promise<ReplicatorEnd>((resolve, reject) => {
    const tick = () => {
      if (signal?.aborted) return resolve('stopped');
      beat().then((end) => (end ? resolve(end) : (timer = setTimeout(tick, interval()))), reject);
    };
    onAbort = () => resolve('stopped');
    signal?.addEventListener('abort', onAbort, { once: true });
    tick();
  }).finally(forgetSignal);
  return {
    ended,
    stop: () => {
      clearTimeout(timer);
      forgetSignal();
    },
  };
}

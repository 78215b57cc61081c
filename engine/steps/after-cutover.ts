/**
 * After cutover with cutover.reverse: the workflow's Reverse loop (ReverseStatus) and its two
 * ends. `pgferry fallback` fences the target, drains the reverse stream into the source, sets
 * the sequences back, lifts the source's fence and points the application back at it;
 * `pgferry finish` ends the reverse stream, lifts the source's fence and (with --drop-control)
 * removes the control schema from both sides.
 *
 * A fallback that fails leaves both sides fenced (no write is accepted on either) and says
 * which command continues: every step of it may run again.
 */
import type pg from 'pg';
import type { SecretsProvider, SecretWriter } from '../connect/index.js';
import {
  markFinished,
  markSourceReady,
  readAfterCutover,
  recordAfterCutoverError,
  recordEvent,
  recordFence,
  recordReverseProgress,
  recordTargetFenced,
  setPhase,
} from '../control/index.js';
import { fenceWrites, liftFence, writeThroughFence } from '../cutover/fence.js';
import { copySequencesBack, drainReverse, dropControlSchemas, endReverse, migratedTargetTables, readReverseStatus } from '../cutover/reverse.js';
import { pointApplicationAt } from '../cutover/switch.js';
import { PgferryError } from '../errors.js';
import type { MigrationSpec } from '../spec/index.js';
import { messageOf, sleep } from '../sql.js';
import { withSides } from './sides.js';

export type ReverseAction = 'wait' | 'restart' | 'fallback' | 'finish';

export interface ReverseDecision {
  action: ReverseAction;
  lagSeconds: number | null;
  lagBytes: number | null;
  rowsApplied: number;
}

/** The reverse stream drains within this much of the Fallback step (its Lambda runs 15 minutes at most). */
const FALLBACK_DRAIN_MS = 10 * 60_000;
const STATUS_POLL_MS = 2_000;

export class FallbackFailedError extends PgferryError {
  constructor(spec: MigrationSpec, stage: string, cause: unknown) {
    super(
      'pgferry.FallbackFailed',
      `Fallback of ${spec.name} stopped while it ${stage}: ${messageOf(cause)}. Both sides stay fenced, so no write is accepted on either. ` +
        `Run pgferry fallback again (with the spec or the execution ARN) once the cause is fixed: every step repeats safely.`,
      { cause },
    );
  }
}

/**
 * What the Reverse loop does next: fall back or finish when asked, restart a reverse streamer
 * that went silent, or wait (looking again every 2 s for up to `waitUpToSeconds`).
 */
export async function reverseStatusStep(spec: MigrationSpec, secrets: SecretsProvider, { waitUpToSeconds = 0 } = {}): Promise<ReverseDecision> {
  const deadline = Date.now() + waitUpToSeconds * 1000;
  return withSides(spec, secrets, { source: true, target: true }, async ({ source, target }) => {
    for (;;) {
      const decision = await reverseDecision(spec, source, target);
      if (decision.action !== 'wait' || Date.now() + STATUS_POLL_MS > deadline) return decision;
      await sleep(STATUS_POLL_MS);
    }
  });
}

async function reverseDecision(spec: MigrationSpec, source: pg.Client, target: pg.Client): Promise<ReverseDecision> {
  const after = await readAfterCutover(target, spec.name);
  const status = await readReverseStatus(source, spec.name);
  const decision = (action: ReverseAction): ReverseDecision => ({
    action,
    lagSeconds: status?.lagSeconds ?? null,
    lagBytes: status?.lagBytes ?? null,
    rowsApplied: status?.rowsApplied ?? 0,
  });
  await recordReverseProgress(target, spec.name, {
    lagSeconds: status?.lagSeconds ?? null,
    lagBytes: status?.lagBytes ?? null,
    rowsApplied: status?.rowsApplied ?? 0,
    appliedLsn: status?.appliedLsn ?? null,
    error: status?.lastError ?? null,
  });
  // A fallback or finish that failed waits until it is asked for again (the request clears the error).
  if (after?.lastError) return decision('wait');
  if (after?.fallbackRequested) return decision('fallback');
  if (after?.finishRequested) return decision('finish');
  if (!status || status.heartbeatAgeSeconds === null || status.heartbeatAgeSeconds > spec.cdc.heartbeatTimeoutSeconds) return decision('restart');
  return decision('wait');
}

/**
 * Fallback: the target is fenced, everything it committed is drained into the source, the
 * sequences are set back, the reverse stream ends, and the source takes writes again.
 */
export async function fallbackStep(spec: MigrationSpec, secrets: SecretsProvider & Partial<SecretWriter>) {
  return withSides(spec, secrets, { source: true, target: true }, async ({ source, target }) => {
    await writeThroughFence(source);
    await writeThroughFence(target);
    const stage = async <T>(doing: string, work: () => Promise<T>): Promise<T> => {
      try {
        return await work();
      } catch (error) {
        const failure = new FallbackFailedError(spec, doing, error);
        await recordAfterCutoverError(target, spec.name, failure.message).catch(() => undefined);
        await recordEvent(target, spec.name, 'error', failure.message).catch(() => undefined);
        throw failure;
      }
    };
    await setPhase(target, spec.name, 'fallback');
    await recordTargetFenced(target, spec.name);
    const fence = await stage('fenced the target', async () => fenceWrites(target, await migratedTargetTables(spec, source, target), { migration: spec.name }));
    // The reverse stream, drained behind a fence, reads past its drain point until the fence is certainly in force (engine/cdc/fence-check.ts).
    await recordFence(source, spec.name, true);
    await recordEvent(target, spec.name, 'info', `fallback: target fenced (${fence.tablesFenced} table(s), ${fence.sessionsEnded} session(s) ended)`);
    const drainLsn = await stage('drained the reverse stream', () => drainReverse(spec, source, target, { timeoutMs: FALLBACK_DRAIN_MS }));
    const sequences = await stage('set the sequences back', () => copySequencesBack(spec, source, target));
    await stage('ended the reverse stream', () => endReverse(spec, source, target, { dropControl: false }));
    await stage('lifted the source fence', () => liftFence(source));
    const switched = spec.cutover.switch ? await stage('pointed the application back at the source', () => pointApplicationAt(spec, secrets, 'source', target)) : false;
    const windowSeconds = await markSourceReady(target, spec.name);
    await recordEvent(
      target,
      spec.name,
      'info',
      `fallback done: drained to ${drainLsn}, ${sequences.length} sequence(s) set back, the source takes writes again` +
        `${switched ? ' (the application secret points at it)' : ''}; writes were unavailable for ${windowSeconds?.toFixed(2) ?? '?'} s; the target stays fenced`,
    );
    await setPhase(target, spec.name, 'done');
    return { drainLsn, sequences: sequences.length, windowSeconds };
  });
}

/**
 * Finish: the reverse stream ends (slot and publication dropped), the source's fence is lifted,
 * and with dropControl (by default as `pgferry finish` asked) the control schema goes.
 */
export async function finishAfterCutoverStep(spec: MigrationSpec, secrets: SecretsProvider, options: { dropControl?: boolean } = {}) {
  return withSides(spec, secrets, { source: true, target: true }, async ({ source, target }) => {
    const dropControl = options.dropControl ?? (await readAfterCutover(target, spec.name))?.dropControl ?? false;
    try {
      await writeThroughFence(source);
      await writeThroughFence(target);
      await endReverse(spec, source, target, { dropControl: false });
      const lifted = [(await liftFence(source)).lifted && 'source', (await liftFence(target)).lifted && 'target'].filter(Boolean);
      await markFinished(target, spec.name);
      await recordEvent(target, spec.name, 'info', `finished: no reverse stream, slot or publication left${lifted.length ? `; fence lifted on the ${lifted.join(' and ')}` : ''}`);
      await setPhase(target, spec.name, 'done');
      if (dropControl) await dropControlSchemas(spec, source, target);
      return { fenceLifted: lifted.length > 0, controlDropped: dropControl };
    } catch (error) {
      const message = `Finish of ${spec.name} failed: ${messageOf(error)}. Run pgferry finish again once the cause is fixed: every step repeats safely.`;
      await recordAfterCutoverError(target, spec.name, message).catch(() => undefined);
      throw new PgferryError('pgferry.FinishFailed', message, { cause: error });
    }
  });
}

/**
 * An operator's request to cut a replicating migration over (what `pgferry cutover` does,
 * locally or through the Operator function on AWS): the workflow's status loop sees the
 * request at its next poll, and the cutover itself happens there.
 */
import type pg from 'pg';
import { findMigration, readAfterCutover, readReplicationStatus, requestCutover, requestFallback, requestFinish } from '../control/index.js';
import { lostRunner } from '../lost-runner.js';
import type { MigrationSpec } from '../spec/index.js';

export type CutoverRequest = { requested: true; message: string } | { requested: false; reason: string };

/** Asks a replicating migration to cut over; refuses, with the reason, when it is not replicating. */
export async function requestMigrationCutover(target: pg.Client, spec: MigrationSpec): Promise<CutoverRequest> {
  const state = await findMigration(target, spec.name);
  if (state?.phase === 'paused') {
    return {
      requested: false,
      reason: `Migration ${spec.name} is paused (${state.error ?? 'no cause recorded'}): continue it with pgferry resume first, then cut over once it has caught up.`,
    };
  }
  const replicating = state !== undefined && state.phase !== 'done' && state.phase !== 'failed' && (await readReplicationStatus(target, spec.name)) !== undefined;
  if (!replicating) {
    return {
      requested: false,
      reason: `Migration ${spec.name} is not replicating changes (phase: ${state?.phase ?? 'not started'}): there is nothing to cut over.`,
    };
  }
  // Nothing would act on the request of a run whose runner is gone.
  const lost = await lostRunner(target, spec.name);
  if (lost) return { requested: false, reason: lost };
  await requestCutover(target, spec.name);
  return {
    requested: true,
    message:
      `Cutover requested for ${spec.name}: it starts once lag is under ${spec.cutover.maxLagSeconds} s` +
      `${spec.cutover.fenceSource ? ', fences the source (writes to the migrated tables refused)' : ''}, drains the remaining changes, then sets sequences and compares.`,
  };
}

export type AfterCutoverRequest = { requested: true; message: string } | { requested: false; reason: string };

/** Asks a cut-over migration whose reverse stream runs to fall back; refuses, saying why and what to do, otherwise. */
export async function requestMigrationFallback(target: pg.Client, spec: MigrationSpec): Promise<AfterCutoverRequest> {
  const state = await findMigration(target, spec.name);
  const after = state ? await readAfterCutover(target, spec.name) : undefined;
  if (!after?.reverseArmed) {
    const cutOver = state?.phase === 'done' || state?.phase === 'reverse';
    return {
      requested: false,
      reason: cutOver
        ? `Migration ${spec.name} was cut over without reverse replication (cutover.reverse), so nothing carried the target's writes back to the source: falling back would lose them. ` +
          'To be able to fall back, set "cutover": {"fenceSource": true, "reverse": true} in the spec before cutover; the reverse stream is armed at cutover.'
        : `Migration ${spec.name} has not been cut over (phase: ${state?.phase ?? 'not started'}): the source is still the primary, there is nothing to fall back from. ` +
          'To be able to fall back after cutover, set "cutover": {"fenceSource": true, "reverse": true} before it.',
    };
  }
  if (after.outcome === 'fallen-back') return { requested: false, reason: `Migration ${spec.name} has already fallen back to the source.` };
  if (after.outcome === 'finished') return { requested: false, reason: `Migration ${spec.name} was finished (pgferry finish): its reverse stream is gone, so it can no longer fall back.` };
  const lost = await lostRunner(target, spec.name);
  if (lost) return { requested: false, reason: lost };
  await requestFallback(target, spec.name);
  return {
    requested: true,
    message:
      `Fallback requested for ${spec.name}: the target is fenced, the writes it took are drained into the source, the sequences set back, and the source takes writes again` +
      `${spec.cutover.switch ? ' (the application secret is pointed back at it)' : ''}.`,
  };
}

/**
 * Asks a cut-over migration to finish: with its reverse stream running the workflow ends it
 * (`workflow`); a migration cut over without one (or fallen back) has no workflow left, and the
 * caller finishes it itself (finishAfterCutoverStep).
 */
export async function requestMigrationFinish(
  target: pg.Client,
  spec: MigrationSpec,
  { dropControl }: { dropControl: boolean },
): Promise<{ by: 'workflow'; message: string } | { by: 'caller' } | { by: 'nobody'; reason: string }> {
  const state = await findMigration(target, spec.name);
  if (state?.phase === 'reverse') {
    const lost = await lostRunner(target, spec.name);
    if (lost) return { by: 'nobody', reason: lost };
    await requestFinish(target, spec.name, dropControl);
    return { by: 'workflow', message: `Finish requested for ${spec.name}: the reverse stream ends, its slot and publication are dropped, and the source's fence is lifted${dropControl ? '; then the control schema is removed' : ''}.` };
  }
  if (state?.phase === 'done') return { by: 'caller' };
  return {
    by: 'nobody',
    reason: `Migration ${spec.name} has not been cut over (phase: ${state?.phase ?? 'not started'}): finish ends what a cutover leaves. To abandon a run instead, use pgferry stop SPEC --drop.`,
  };
}

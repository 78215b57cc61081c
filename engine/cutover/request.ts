/**
 * An operator's request to cut a replicating migration over (what `pgferry cutover` does,
 * locally or through the Operator function on AWS): the workflow's status loop sees the
 * request at its next poll, and the cutover itself happens there.
 */
import type pg from 'pg';
import { findMigration, readReplicationStatus, requestCutover } from '../control/index.js';
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

/**
 * Cleanup: after a caught failure (the workflow's Cleanup state), an execution that ended
 * without succeeding (the stack's EventBridge rule), or `pgferry stop`.
 */
import { dropSlotAndPublication, replicationNames } from '../cdc/slot.js';
import { readReplicationStatus } from '../control/index.js';
import type { SecretsProvider } from '../connect/index.js';
import { findMigration, recordEvent, setPhase } from '../control/index.js';
import { unfenceSource } from '../cutover/index.js';
import type { MigrationSpec } from '../spec/index.js';
import { usesCdc, withSides, writeThroughFence } from './sides.js';

export interface CleanupResult {
  cleaned: boolean;
  unfenced?: boolean;
  slotDropped?: boolean;
  publicationDropped?: boolean;
  /** Why it did nothing, or what it could not do. */
  reason?: string;
}

type Failure = { Error?: string; Cause?: string };

/** Runs cleanup actions one by one, collecting what failed instead of stopping. */
class Attempts {
  readonly problems: string[] = [];

  async attempt(what: string, body: () => Promise<void>): Promise<void> {
    try {
      await body();
    } catch (error) {
      this.problems.push(`${what}: ${(error as Error).message}`);
    }
  }
}

/**
 * Marks the run failed (which releases the snapshot holder and stops the streamer), lifts a
 * cutover fence and drops the slot and publication (unless cdc.keepSlotOnFailure). Best effort,
 * step by step: it never hides the original error, and it is safe to run twice. Given the
 * `execution` that cleans up (the workflow's Cleanup state, or the rule on an execution's
 * status), it touches only the run that execution registered: another run of the same name
 * keeps its slot, and an execution that never registered (it failed before SchemaPreData, or
 * was refused because another run is under way) has nothing to clean. A failure already
 * recorded keeps its own reason; a finished (done) run is left as it is. Without `execution`
 * (`pgferry stop SPEC`, for a run whose runner is gone) it cleans up whatever run is registered.
 */
export async function cleanupStep(spec: MigrationSpec, secrets: SecretsProvider, failure: Failure, execution?: string): Promise<CleanupResult> {
  const attempts = new Attempts();
  const run: RunOnTarget = { owned: false, fenced: false };
  await attempts.attempt('control schema', () => failRunOnTarget(spec, secrets, failure, execution, run));
  if (run.skip) return { cleaned: false, reason: run.skip };
  if (execution !== undefined && !run.owned) {
    // Unverified, the slot may be another run's: a live migration must never lose it.
    return {
      cleaned: false,
      reason: `${attempts.problems.join('; ')}; the replication slot and publication were left alone, since it is unknown whether they belong to ${execution}: run "pgferry stop ${execution.startsWith('arn:') ? execution : 'SPEC'}" once the target is reachable`,
    };
  }
  const { fenced } = run;
  let slot: { slotDropped: boolean; publicationDropped: boolean } | undefined;
  if (usesCdc(spec)) {
    await attempts.attempt('source', async () => {
      slot = await releaseSource(spec, secrets, fenced);
    });
  }
  const { problems } = attempts;
  return { cleaned: problems.length === 0, unfenced: fenced, ...(slot ?? {}), ...(problems.length ? { reason: problems.join('; ') } : {}) };
}

/** What the target said about the run, as far as it got. */
interface RunOnTarget {
  /** Why there is nothing to clean up: the run is not this execution's, or it finished. */
  skip?: string;
  /** The registered run is the one to clean up (or none is registered): its slot may go. */
  owned: boolean;
  fenced: boolean;
}

/** Checks whose run is registered and marks it failed, noting in `run` what it found (so far, if a statement fails). */
async function failRunOnTarget(spec: MigrationSpec, secrets: SecretsProvider, failure: Failure, execution: string | undefined, run: RunOnTarget): Promise<void> {
  await withSides(spec, secrets, { target: true }, async ({ target }) => {
    const state = await findMigration(target, spec.name);
    if (execution !== undefined && state?.execution !== execution) {
      run.skip = state
        ? `migration ${spec.name} on the target belongs to ${state.execution ?? 'a local run'}, not to ${execution}`
        : `execution ${execution} never registered migration ${spec.name} on the target: it created nothing to clean up`;
      return;
    }
    run.owned = true;
    if (!state) return;
    if (state.phase === 'done') {
      // A status event can come late, or for a later failure than the migration's own end.
      run.skip = `migration ${spec.name} finished (phase done): there is nothing to clean up`;
      return;
    }
    if (state.phase !== 'failed') {
      await setPhase(target, spec.name, 'failed', `${failure.Error ?? 'error'}: ${failure.Cause ?? ''}`.slice(0, 10_000));
      await recordEvent(target, spec.name, 'error', `${failure.Error ?? 'error'}`);
    }
    run.fenced = (await readReplicationStatus(target, spec.name))?.fenced ?? false;
  });
}

/** Lifts the fence and drops the slot and publication (unless the spec keeps them). */
async function releaseSource(spec: MigrationSpec, secrets: SecretsProvider, fenced: boolean) {
  return withSides(spec, secrets, { source: true }, async ({ source }) => {
    await writeThroughFence(source);
    if (fenced) await unfenceSource(source);
    if (!spec.cdc.keepSlotOnFailure) return dropSlotAndPublication(source, replicationNames(spec));
    return undefined;
  });
}

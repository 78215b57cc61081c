/**
 * Cleanup: after a caught failure (the workflow's Cleanup state), an execution that ended
 * without succeeding (the stack's EventBridge rule), or `pgferry stop`. A run that streams
 * changes and has its slot is paused, never thrown away: only an abandon (`pgferry stop
 * --drop`) or a successful finish drops the slot.
 */
import { dropSlotAndPublication, replicationNames } from '../cdc/slot.js';
import { readReplicationStatus, recordFence } from '../control/index.js';
import type { SecretsProvider } from '../connect/index.js';
import { findMigration, recordEvent, setPhase, type MigrationState } from '../control/index.js';
import { liftFence, writeThroughFence } from '../cutover/fence.js';
import type { MigrationSpec } from '../spec/index.js';
import { dropMigrationOrigins } from '../cutover/reverse.js';
import { alertsOf, type AlertSink } from '../alerts/index.js';
import { failureAlert, pauseAlert } from '../alerts/messages.js';
import { usesCdc, withSides } from './sides.js';

export interface CleanupResult {
  cleaned: boolean;
  /** The run is paused: its slot, publication and target data are kept for pgferry resume. */
  paused: boolean;
  unfenced?: boolean;
  slotDropped?: boolean;
  publicationDropped?: boolean;
  /** Why it did nothing, or what it could not do. */
  reason?: string;
}

type Failure = { Error?: string; Cause?: string };

/** The error of a stopped execution (platform/aws/deployment.ts, stopFailure). */
const STOPPED = 'pgferry.Stopped';

export interface CleanupOptions {
  /** Abandon the run: fail it and drop its slot and publication even when it could pause (pgferry stop --drop). */
  abandon?: boolean;
  /** Where the failure and pause alerts of alerts.snsTopicArn go (SNS on AWS); without one they are only recorded as events. */
  alertSink?: AlertSink;
  /**
   * Alert the failure of an execution that never registered its run (ValidateSpec, Precheck, a
   * refusal): the workflow's Cleanup state only, which runs once per execution; nothing records
   * such an alert, so the rule on the execution's end must not send it again.
   */
  alertUnregistered?: boolean;
}

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
 * Pauses a run that streams changes once its slot exists (unless `abandon`): it records the
 * cause, lifts a cutover fence and keeps the slot and publication. Any other run is marked
 * failed (which releases the snapshot holder and stops the streamer), its fence lifted and its
 * slot and publication dropped (unless cdc.keepSlotOnFailure). Either way the tasks end. Best effort,
 * step by step: it never hides the original error, and it is safe to run twice. Given the
 * `execution` that cleans up (the workflow's Cleanup state, or the rule on an execution's
 * status), it touches only the run that execution registered: another run of the same name
 * keeps its slot, and an execution that never registered (it failed before SchemaPreData, or
 * was refused because another run is under way) has nothing to clean. A failure already
 * recorded keeps its own reason; a finished (done) run is left as it is. Without `execution`
 * (`pgferry stop SPEC`, for a run whose runner is gone) it cleans up whatever run is registered.
 */
export async function cleanupStep(
  spec: MigrationSpec,
  secrets: SecretsProvider,
  failure: Failure,
  execution?: string,
  { abandon = false, alertSink, alertUnregistered = false }: CleanupOptions = {},
): Promise<CleanupResult> {
  const attempts = new Attempts();
  const run: RunOnTarget = { owned: false, fenced: false, paused: false };
  await attempts.attempt('control schema', () => settleRunOnTarget(spec, secrets, failure, execution, abandon, run));
  if (run.skip) {
    // A stop (pgferry stop, StopExecution) is a person's decision, not a condition to alert.
    if (!run.owned && alertUnregistered && failure.Error !== STOPPED) {
      const text = failureAlert(spec, { error: failure.Error ?? 'error', cause: failure.Cause ?? '' });
      await alertsOf(spec, alertSink)?.sendUnrecorded(text, 'failure');
    }
    return { cleaned: false, paused: run.paused, reason: run.skip };
  }
  if (execution !== undefined && !run.owned) {
    // Unverified, the slot may be another run's: a live migration must never lose it.
    return {
      cleaned: false,
      paused: false,
      reason: `${attempts.problems.join('; ')}; the replication slot and publication were left alone, since it is unknown whether they belong to ${execution}: run "pgferry stop ${execution.startsWith('arn:') ? execution : 'SPEC'}" once the target is reachable`,
    };
  }
  const { fenced, paused } = run;
  let slot: { slotDropped: boolean; publicationDropped: boolean } | undefined;
  if (usesCdc(spec)) {
    await attempts.attempt('source', async () => {
      slot = await releaseSource(spec, secrets, { fenced, keepSlot: paused || (spec.cdc.keepSlotOnFailure && !abandon) });
    });
    // The replication origins of cutover.reverse go with the run they served.
    if (slot?.slotDropped && spec.cutover.reverse) {
      await attempts.attempt('replication origins', async () => {
        await withSides(spec, secrets, { source: true, target: true }, ({ source, target }) => dropMigrationOrigins(spec, source, target));
      });
    }
    // Recorded only once lifted: a cleanup that could not lift it tries again when run again.
    if (paused && fenced && attempts.problems.length === 0) {
      await attempts.attempt('control schema', () => withSides(spec, secrets, { target: true }, ({ target }) => recordFence(target, spec.name, false)));
    }
  }
  if (run.alert) await alertStop(spec, secrets, run.alert, slot, alertSink);
  const { problems } = attempts;
  return {
    cleaned: problems.length === 0,
    paused,
    unfenced: fenced,
    ...(slot ?? {}),
    ...(problems.length ? { reason: problems.join('; ') } : {}),
  };
}

/** What the target said about the run, as far as it got. */
interface RunOnTarget {
  /** Why there is nothing to clean up: the run is not this execution's, or it finished. */
  skip?: string;
  /** The registered run is the one to clean up (or none is registered): its slot may go. */
  owned: boolean;
  fenced: boolean;
  /** The run is (now) paused. */
  paused: boolean;
  /** The run paused or failed here: alerted once the slot is settled. */
  alert?: { kind: 'pause' | 'failure'; episode: string; error: string; cause: string; phase: string };
}

/** A run that streams changes and has registered its slot pauses instead of failing. */
const canPause = (spec: MigrationSpec, state: MigrationState, slotRegistered: boolean) =>
  usesCdc(spec) && slotRegistered && state.phase !== 'failed' && state.phase !== 'done';

/** The failure as a pause or a failed run records it. */
const failureText = (failure: Failure) => `${failure.Error ?? 'error'}: ${failure.Cause ?? ''}`.slice(0, 10_000);

/** Checks whose run is registered and pauses it or marks it failed, noting in `run` what it found (so far, if a statement fails). */
async function settleRunOnTarget(
  spec: MigrationSpec,
  secrets: SecretsProvider,
  failure: Failure,
  execution: string | undefined,
  abandon: boolean,
  run: RunOnTarget,
): Promise<void> {
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
    if (state.phase === 'reverse' || state.phase === 'fallback') {
      // Cut over: the target takes the writes; lifting the source's fence would let both sides take them.
      run.skip = `migration ${spec.name} is cut over (phase ${state.phase}): its fences and reverse stream stay; end them with pgferry finish, or return with pgferry fallback`;
      return;
    }
    const replication = await readReplicationStatus(target, spec.name);
    run.fenced = replication?.fenced ?? false;
    // A pause or a failure is one episode per execution: the Cleanup state and the rule on the execution's end alert it once.
    const stopped = { episode: execution ?? state.execution ?? 'local', error: failure.Error ?? 'error', cause: failure.Cause ?? '', phase: state.phase };
    if (!abandon && canPause(spec, state, replication !== undefined)) {
      if (state.phase !== 'paused') {
        await setPhase(target, spec.name, 'paused', failureText(failure));
        await recordEvent(target, spec.name, 'warn', `paused (${failure.Error ?? 'error'}): the slot is kept; continue with pgferry resume, or abandon with pgferry stop --drop`);
        run.alert = { kind: 'pause', ...stopped };
      }
      run.paused = true;
      return;
    }
    if (state.phase !== 'failed') {
      await setPhase(target, spec.name, 'failed', abandon && state.phase === 'paused' && state.error ? `abandoned while paused; ${state.error}` : failureText(failure));
      await recordEvent(target, spec.name, 'error', abandon ? 'abandoned: the slot and publication are dropped' : `${failure.Error ?? 'error'}`);
      // Abandoning is a person's decision, not a condition to alert.
      if (!abandon) run.alert = { kind: 'failure', ...stopped };
    }
  });
}

/** Lifts the fence and drops the slot and publication (unless they are kept). */
async function releaseSource(spec: MigrationSpec, secrets: SecretsProvider, { fenced, keepSlot }: { fenced: boolean; keepSlot: boolean }) {
  return withSides(spec, secrets, { source: true }, async ({ source }) => {
    await writeThroughFence(source);
    if (fenced) await liftFence(source);
    if (!keepSlot) return dropSlotAndPublication(source, replicationNames(spec));
    return undefined;
  });
}

/** Sends the pause or failure alert of alerts.snsTopicArn (best effort: a cleanup never fails for an alert). */
async function alertStop(
  spec: MigrationSpec,
  secrets: SecretsProvider,
  { kind, episode, ...stop }: NonNullable<RunOnTarget['alert']>,
  slot: { slotDropped: boolean } | undefined,
  sink: AlertSink | undefined,
): Promise<void> {
  const alerts = alertsOf(spec, sink);
  if (!alerts) return;
  const slotOutcome = slot?.slotDropped ? 'dropped' : usesCdc(spec) && spec.cdc.keepSlotOnFailure ? 'kept' : 'none';
  const text = kind === 'pause' ? pauseAlert(spec, stop) : failureAlert(spec, { ...stop, slot: slotOutcome });
  await withSides(spec, secrets, { target: true }, ({ target }) => alerts.raise(target, kind, text, episode)).catch(() => undefined);
}

/**
 * The workflow's short steps around the full load, as engine functions the Lambdas wrap:
 * pre-data, planning, finishing the load, finishing the migration, and cleanup on failure.
 */
import type pg from 'pg';
import { connectSide, serverVersion, settleAll, type SecretsProvider, type Side } from './connect/index.js';
import {
  beginMigration,
  ensureControlSchema,
  findMigration,
  loadComparisons,
  migrationState,
  readReplicationStatus,
  recordEvent,
  recordFence,
  recordSchemaObjects,
  requestApply,
  saveIndexJobs,
  setDrainLsn,
  setPhase,
} from './control/index.js';
import { PgferryError } from './errors.js';
import { planUnits, savePlan, targetFacts, targetOf } from './load/planner.js';
import { copySequenceValues, loadTimeIndexJobs, migratePreData, postDataLeftNothing } from './schema/index.js';
import { dataTables, listTables } from './catalog/tables.js';
import { describeMismatches } from './compare/index.js';
import type { MigrationSpec } from './spec/index.js';
import { dropSlotAndPublication, replicationNames } from './cdc/slot.js';
import { ReplicationFailedError } from './cdc/replicator.js';
import { fenceSource, markDrainPoint, unfenceSource } from './cutover/index.js';

async function withSides<T>(
  spec: MigrationSpec,
  secrets: SecretsProvider,
  sides: { source?: boolean; target?: boolean },
  body: (clients: { source: pg.Client; target: pg.Client }) => Promise<T>,
): Promise<T> {
  const clients: Partial<Record<Side, pg.Client>> = {};
  const connectIf = async (side: Side) => {
    if (!sides[side]) return;
    const client = await connectSide(side, spec[side], secrets, { applicationName: 'pgferry' });
    // A connection that drops while idle fails its next query instead of crashing the process.
    client.on('error', () => undefined);
    clients[side] = client;
  };
  try {
    // Both at once; if one side cannot be reached, the other's connection is closed before the error goes on.
    await settleAll([connectIf('source'), connectIf('target')]);
    return await body(clients as { source: pg.Client; target: pg.Client });
  } finally {
    await Promise.all(Object.values(clients).map((client) => client.end()));
  }
}

const countBy = <T>(items: T[], key: (item: T) => string) =>
  items.reduce<Record<string, number>>((counts, item) => ((counts[key(item)] = (counts[key(item)] ?? 0) + 1), counts), {});

/** `execution`: the Step Functions execution running the migration, recorded for cleanup (see cleanupStep). */
export async function schemaPreDataStep(spec: MigrationSpec, secrets: SecretsProvider, execution?: string) {
  return withSides(spec, secrets, { source: true, target: true }, async ({ source, target }) => {
    await ensureControlSchema(target);
    await beginMigration(target, spec.name, spec, execution);
    if (spec.mode === 'cdc') {
      await recordEvent(target, spec.name, 'info', 'pre-data: skipped, mode "cdc" streams into existing tables');
      return { tables: 0, objects: {} };
    }
    const result = await migratePreData(source, target, spec);
    await recordSchemaObjects(target, spec.name, 'pre-data', result.objects);
    await recordEvent(target, spec.name, 'info', `pre-data: ${result.objects.length} objects`);
    return { tables: dataTables(result.tables).length, objects: countBy(result.objects, (o) => o.status) };
  });
}

export async function planFullLoadStep(spec: MigrationSpec, secrets: SecretsProvider) {
  return withSides(spec, secrets, { source: true, target: true }, async ({ source, target }) => {
    await setPhase(target, spec.name, 'load');
    const tables = await listTables(source, spec.objects);
    const sourceVersionNum = await serverVersion(source);
    const facts = await targetFacts(target, dataTables(tables).map(targetOf));
    const units = planUnits({ tables, target: facts, spec, sourceVersionNum });
    await savePlan(target, spec.name, tables, units);
    await saveIndexJobs(target, spec.name, await loadTimeIndexJobs(source, spec));
    const workerCount = Math.max(1, Math.min(spec.fullLoad.parallelism, units.length));
    return { units: units.length, workers: Array.from({ length: workerCount }, (_, i) => i + 1) };
  });
}

export class LoadFailedError extends PgferryError {
  constructor(message: string) {
    super('pgferry.LoadFailed', message);
  }
}

export async function finishFullLoadStep(spec: MigrationSpec, secrets: SecretsProvider) {
  return withSides(spec, secrets, { source: true, target: true }, async ({ source, target }) => {
    const { rows } = await target.query(
      `SELECT u.id, u.source_schema, u.source_table, u.state, p.attempts, u.last_error
         FROM pgferry.units u JOIN pgferry.unit_progress p USING (migration, id)
        WHERE u.migration = $1 AND u.state <> 'done' ORDER BY u.id`,
      [spec.name],
    );
    if (rows.length > 0) {
      const lines = rows.map(
        (u) => `  - unit ${u.id} (${u.source_schema}.${u.source_table}): ${u.state} after ${u.attempts} attempt(s)${u.last_error ? `: ${u.last_error}` : ''}`,
      );
      throw new LoadFailedError(`The full load did not finish: ${rows.length} work unit(s) not copied.\n${lines.join('\n')}`);
    }
    const sequences = spec.schema.sync.sequences ? await copySequenceValues(source, target, spec) : [];
    await recordSchemaObjects(target, spec.name, 'sequences', sequences);
    const { rows: totals } = await target.query(
      `SELECT count(*)::int AS units, coalesce(sum(rows_copied), 0)::float8 AS rows, coalesce(sum(bytes_copied), 0)::float8 AS bytes
         FROM pgferry.units WHERE migration = $1`,
      [spec.name],
    );
    // When the copy workers built every index and constraint, post-data is only its report: no task to start for it.
    // If that cannot be told (a failed read), the post-data task, which has no time limit, decides as it always did.
    const connect = (side: 'source' | 'target') => () => connectSide(side, spec[side], secrets, { applicationName: 'pgferry' });
    const postData = await postDataLeftNothing(connect('source'), connect('target'), spec).catch(() => undefined);
    if (postData) {
      await setPhase(target, spec.name, 'post-data');
      await recordSchemaObjects(target, spec.name, 'post-data', postData.objects);
      await recordEvent(target, spec.name, 'info', `post-data: ${postData.objects.length} objects, nothing left to build after the load`);
    }
    return { ...totals[0], sequences: sequences.length, postDataLeft: !postData } as {
      units: number;
      rows: number;
      bytes: number;
      sequences: number;
      /** Whether the post-data task has statements to run. */
      postDataLeft: boolean;
    };
  });
}

export class CompareMismatchError extends PgferryError {
  constructor(message: string) {
    super('pgferry.CompareMismatch', message);
  }
}

const usesCdc = (spec: MigrationSpec) => spec.mode !== 'full';

/** A session opened after a cutover fence starts read-only; pgferry's own cleanup of the source must still write. */
const writeThroughFence = (source: pg.Client) => source.query('SET default_transaction_read_only = off');

/** Post-data has built the keys: the streamer may start applying. */
export async function beginApplyStep(spec: MigrationSpec, secrets: SecretsProvider) {
  return withSides(spec, secrets, { target: true }, async ({ target }) => {
    await requestApply(target, spec.name);
    await setPhase(target, spec.name, 'replicate');
    await recordEvent(target, spec.name, 'info', 'CDC: applying changes');
    return { applying: true };
  });
}

export type ReplicationAction = 'wait' | 'restart' | 'compare' | 'cutover' | 'drained';

/** How often replicationStatusStep looks again while it waits. */
const STATUS_POLL_MS = 2_000;

/**
 * Says what the workflow's CDC loop does next: wait, restart a silent streamer, compare while
 * replicating, cut over, or finish once drained. While the answer is "wait" it looks again
 * every 2 s for up to `waitUpToSeconds`: each turn of the loop costs the execution about nine
 * history events, and a Standard execution ends at 25,000, so on AWS one turn must span
 * minutes, not seconds (at 14 minutes a turn, about 27 days of replication).
 */
export async function replicationStatusStep(spec: MigrationSpec, secrets: SecretsProvider, { waitUpToSeconds = 0 } = {}) {
  const deadline = Date.now() + waitUpToSeconds * 1000;
  return withSides(spec, secrets, { target: true }, async ({ target }) => {
    let decision = await replicationDecision(spec, target);
    while (decision.action === 'wait' && Date.now() + STATUS_POLL_MS <= deadline) {
      await new Promise((resolve) => setTimeout(resolve, STATUS_POLL_MS));
      try {
        const phase = (await migrationState(target, spec.name))?.phase;
        if (phase === 'failed' || phase === undefined) {
          throw new ReplicationFailedError(`Migration ${spec.name} ${phase ? 'was marked failed' : 'is no longer registered'} while its CDC loop waited.`);
        }
        decision = await replicationDecision(spec, target);
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

async function replicationDecision(spec: MigrationSpec, target: pg.Client) {
  const status = await readReplicationStatus(target, spec.name);
  if (!status) throw new ReplicationFailedError(`Migration ${spec.name} has no replication registered in the target's control schema.`);
  if (status.lastError) throw new ReplicationFailedError(`Change data capture stopped: ${status.lastError}`);
  const report = {
    lagSeconds: status.lagSeconds,
    lagBytes: status.lagBytes,
    heartbeatAgeSeconds: status.heartbeatAgeSeconds,
    appliedLsn: status.appliedLsn,
    rowsApplied: status.rowsApplied,
    restarts: status.restarts,
    cutoverRequested: status.cutoverRequested,
  };
  const action = (a: ReplicationAction) => ({ action: a, ...report });
  if (status.drained) return action('drained');
  const windowSeconds = spec.cdc.retryWindowMinutes * 60;
  if ((status.unhealthySeconds ?? 0) > windowSeconds) {
    throw new ReplicationFailedError(
      `The CDC streamer has not reported for ${Math.round(status.unhealthySeconds! / 60)} minute(s), longer than cdc.retryWindowMinutes (${spec.cdc.retryWindowMinutes}); see its log for the reason.`,
    );
  }
  if (status.heartbeatAgeSeconds === null || status.heartbeatAgeSeconds > spec.cdc.heartbeatTimeoutSeconds) return action('restart');
  if (status.drainLsn !== null) return action('wait');
  const caughtUp = status.streamingSince !== null && status.lagSeconds !== null && status.lagSeconds <= spec.cutover.maxLagSeconds;
  if (caughtUp && spec.compare.enabled && !status.liveCompared) return action('compare');
  if (caughtUp && (spec.cutover.mode === 'auto' || status.cutoverRequested)) return action('cutover');
  return action('wait');
}

/** Fences the source if the spec says so, then tells the streamer the LSN to drain to. */
export async function cutoverStep(spec: MigrationSpec, secrets: SecretsProvider) {
  return withSides(spec, secrets, { source: true, target: true }, async ({ source, target }) => {
    let fence: { sessionsEnded: number } | undefined;
    if (spec.cutover.fenceSource) {
      await recordFence(target, spec.name, true);
      fence = await fenceSource(source);
      await recordEvent(target, spec.name, 'info', `cutover: source made read-only, ${fence.sessionsEnded} session(s) ended`);
    }
    const drainLsn = await markDrainPoint(source);
    await setDrainLsn(target, spec.name, drainLsn);
    await setPhase(target, spec.name, 'cutover');
    await recordEvent(target, spec.name, 'info', `cutover: draining to ${drainLsn}`);
    return { drainLsn, fenced: Boolean(fence), sessionsEnded: fence?.sessionsEnded ?? 0 };
  });
}

/** Drained: sequences take the source's values before applications move. */
export async function finishCutoverStep(spec: MigrationSpec, secrets: SecretsProvider) {
  return withSides(spec, secrets, { source: true, target: true }, async ({ source, target }) => {
    const sequences = spec.cutover.syncSequences && spec.schema.sync.sequences ? await copySequenceValues(source, target, spec) : [];
    await recordSchemaObjects(target, spec.name, 'sequences', sequences);
    return { sequences: sequences.length };
  });
}

export async function finishMigrationStep(spec: MigrationSpec, secrets: SecretsProvider) {
  return withSides(spec, secrets, { target: true, source: usesCdc(spec) }, async ({ source, target }) => {
    const comparisons = await loadComparisons(target, spec.name);
    const mismatches = describeMismatches(comparisons);
    if (mismatches) {
      const count = comparisons.filter((c) => c.status === 'mismatch').length;
      const message = `The comparison found differences in ${count} table(s):\n${mismatches.replace(/^/gm, '  - ')}`;
      await setPhase(target, spec.name, 'failed', message);
      throw new CompareMismatchError(message);
    }
    if (usesCdc(spec)) {
      await writeThroughFence(source);
      const dropped = await dropSlotAndPublication(source, replicationNames(spec));
      await recordEvent(target, spec.name, 'info', `CDC ended: slot ${dropped.slotDropped ? 'dropped' : 'already gone'}`);
    }
    await setPhase(target, spec.name, 'done');
    await recordEvent(target, spec.name, 'info', 'migration done');
    return { tables: comparisons.length, compared: spec.compare.enabled };
  });
}

export interface CleanupResult {
  cleaned: boolean;
  unfenced?: boolean;
  slotDropped?: boolean;
  publicationDropped?: boolean;
  /** Why it did nothing, or what it could not do. */
  reason?: string;
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
export async function cleanupStep(
  spec: MigrationSpec,
  secrets: SecretsProvider,
  failure: { Error?: string; Cause?: string },
  execution?: string,
): Promise<CleanupResult> {
  const problems: string[] = [];
  const attempt = async (what: string, body: () => Promise<void>) => {
    try {
      await body();
    } catch (error) {
      problems.push(`${what}: ${(error as Error).message}`);
    }
  };
  let fenced = false;
  /** Why there is nothing to clean up: the run is not this execution's, or it finished. */
  let skip: string | undefined;
  let ownershipChecked = false;
  await attempt('control schema', () =>
    withSides(spec, secrets, { target: true }, async ({ target }) => {
      const state = await findMigration(target, spec.name);
      if (execution !== undefined && state?.execution !== execution) {
        skip = state
          ? `migration ${spec.name} on the target belongs to ${state.execution ?? 'a local run'}, not to ${execution}`
          : `execution ${execution} never registered migration ${spec.name} on the target: it created nothing to clean up`;
        return;
      }
      ownershipChecked = true;
      if (!state) return;
      if (state.phase === 'done') {
        // A status event can come late, or for a later failure than the migration's own end.
        skip = `migration ${spec.name} finished (phase done): there is nothing to clean up`;
        return;
      }
      if (state.phase !== 'failed') {
        await setPhase(target, spec.name, 'failed', `${failure.Error ?? 'error'}: ${failure.Cause ?? ''}`.slice(0, 10_000));
        await recordEvent(target, spec.name, 'error', `${failure.Error ?? 'error'}`);
      }
      fenced = (await readReplicationStatus(target, spec.name))?.fenced ?? false;
    }),
  );
  if (skip) return { cleaned: false, reason: skip };
  if (execution !== undefined && !ownershipChecked) {
    // Unverified, the slot may be another run's: a live migration must never lose it.
    return {
      cleaned: false,
      reason: `${problems.join('; ')}; the replication slot and publication were left alone, since it is unknown whether they belong to ${execution}: run "pgferry stop ${execution.startsWith('arn:') ? execution : 'SPEC'}" once the target is reachable`,
    };
  }
  let slot: { slotDropped: boolean; publicationDropped: boolean } | undefined;
  if (usesCdc(spec)) {
    await attempt('source', () =>
      withSides(spec, secrets, { source: true }, async ({ source }) => {
        await writeThroughFence(source);
        if (fenced) await unfenceSource(source);
        if (!spec.cdc.keepSlotOnFailure) slot = await dropSlotAndPublication(source, replicationNames(spec));
      }),
    );
  }
  return { cleaned: problems.length === 0, unfenced: fenced, ...(slot ?? {}), ...(problems.length ? { reason: problems.join('; ') } : {}) };
}

/**
 * The CDC task. First start (StartReplication): creates the publication and the slot with its
 * exported snapshot, reports them through the task callback, holds the snapshot until the full
 * load no longer needs it, waits for BeginApply, then streams and applies until cutover has
 * drained. A restart (ResumeReplication, PGFERRY_RESUME=1) goes straight to streaming from the
 * target's checkpoint. If the workflow gives up on the task before it has reported (a timeout),
 * it creates no slot, and drops the slot and publication it has created, then exits non-zero.
 */
import pg from 'pg';
import { dataTables, listTables } from '../engine/catalog/tables.js';
import { createSlotWithSnapshot, dropSlotAndPublication, ensurePublication, replicationNames, slotState } from '../engine/cdc/slot.js';
import { runReplicator } from '../engine/cdc/replicator.js';
import { migrationState, readReplicationStatus, recordReplicationError, recordRestart, recordSnapshot, registerReplication } from '../engine/control/index.js';
import { CANONICAL_STARTUP_OPTIONS, resolveEndpoint, workingClientConfig } from '../engine/connect/index.js';
import { STREAMER_APPLICATION_NAME } from '../engine/cutover/index.js';
import { PgferryError } from '../engine/errors.js';
import { replicationMetrics } from '../platform/observability.js';
import { DefaultSecretsProvider } from '../platform/secrets/index.js';
import { goneError, goneReason, TaskGoneError } from '../platform/task-callback.js';
import { sleep } from '../engine/sql.js';
import { runCallbackTask } from './task.js';

const POLL_MS = 500;


await runCallbackTask('replicate', async ({ migration, spec, env, connectSource, connectTarget, log, metrics, callback }) => {
  const { slotName, publicationName } = replicationNames(spec);
  const resume = env.PGFERRY_RESUME === '1';
  const stop = new AbortController();
  for (const signal of ['SIGTERM', 'SIGINT'] as const) process.once(signal, () => stop.abort());

  const endpoint = await resolveEndpoint('source', spec.source, new DefaultSecretsProvider(env));
  const streamConfig = () =>
    workingClientConfig(endpoint, {
      applicationName: STREAMER_APPLICATION_NAME,
      extra: { replication: 'database', options: CANONICAL_STARTUP_OPTIONS } as Partial<pg.ClientConfig>,
    });

  const control = await connectTarget();
  control.on('error', () => undefined);
  try {
    if (resume) {
      await recordRestart(control, migration);
      await callback.success({ resumed: true });
      log('restarted: resuming from the checkpoint');
    } else {
      await startReplication();
    }
    const end = await runReplicator({
      migration,
      slotName,
      publicationName,
      conflictPolicy: spec.cdc.conflictPolicy,
      batch: spec.cdc.batch,
      retryWindowMs: spec.cdc.retryWindowMinutes * 60_000,
      heartbeatMs: 1000,
      connectSource,
      connectTarget,
      streamConfig,
      operations: Object.fromEntries(
        Object.entries(spec.objects.tables).flatMap(([table, options]) => (options.operations ? [[table, options.operations]] : [])),
      ),
      log,
      signal: stop.signal,
      onHeartbeat: metrics && replicationMetrics(metrics, { lagThresholdSeconds: spec.alerts.lagThresholdSeconds }),
    });
    log(end === 'drained' ? 'drained for cutover; streaming ended' : 'stopped');
  } catch (error) {
    // Nobody waits for this task any more: its error is no error of the migration (another attempt may be running).
    if (callback.gone.aborted) throw goneError(error, callback.gone, resume ? 'not resuming replication' : 'stopped');
    await recordReplicationError(control, migration, (error as Error).message).catch(() => undefined);
    throw error;
  } finally {
    await control.end().catch(() => undefined);
  }

  /** Drops the slot and publication this attempt created; says what it did, for the task's last line (undefined: it created none). */
  async function removeCreated(source: pg.Client, slotCreated: boolean, publicationCreated: boolean): Promise<string | undefined> {
    if (!slotCreated && !publicationCreated) return undefined;
    const created = slotCreated ? `replication slot ${slotName}` : `publication ${publicationName}`;
    if (spec.cdc.keepSlotOnFailure) return `kept the ${created} it had created (cdc.keepSlotOnFailure)`;
    try {
      if (slotCreated) {
        const dropped = await dropSlotAndPublication(source, { slotName, publicationName });
        const what = [dropped.slotDropped && `replication slot ${slotName}`, dropped.publicationDropped && `publication ${publicationName}`].filter(Boolean);
        return what.length ? `dropped the ${what.join(' and the ')} it had created` : `the ${created} it had created was already gone`;
      }
      await source.query(`DROP PUBLICATION IF EXISTS ${source.escapeIdentifier(publicationName)}`);
      return `dropped the publication ${publicationName} it had created`;
    } catch (error) {
      return `could not drop the ${created} it had created, drop it by hand: ${(error as Error).message}`;
    }
  }

  async function startReplication(): Promise<void> {
    const source = await connectSource();
    let holder: Awaited<ReturnType<typeof createSlotWithSnapshot>> | undefined;
    let publicationCreated = false;
    try {
      const tables = dataTables(await listTables(source, spec.objects));
      callback.throwIfGone('not starting replication');
      publicationCreated = (await ensurePublication(source, { name: publicationName, tables })) === 'created';
      const existing = await slotState(source, slotName);
      let consistentLsn: string | null;
      let snapshot: string | undefined;
      if (existing.exists && spec.cdc.resumeSlot && spec.mode === 'cdc') {
        consistentLsn = existing.confirmedFlushLsn;
        log(`resuming existing slot ${slotName} at ${consistentLsn}`);
      } else {
        callback.throwIfGone(`not creating replication slot ${slotName}`);
        holder = await createSlotWithSnapshot(async () => {
          const client = new pg.Client(await streamConfig());
          await client.connect();
          return client;
        }, slotName);
        consistentLsn = holder.slot.consistentLsn;
        snapshot = holder.slot.snapshot;
        log(`created slot ${slotName} at ${consistentLsn} with snapshot ${snapshot}`);
      }
      callback.throwIfGone(`not using replication slot ${slotName}`);
      await registerReplication(control, migration, { slotName, publicationName, consistentLsn });
      await recordSnapshot(control, migration, snapshot ?? null);
      await callback.success({ slotName, publicationName, consistentLsn, ...(snapshot ? { snapshot } : {}) });
    } catch (error) {
      await callback.reportFailure(error instanceof PgferryError ? error.name : 'pgferry.ReplicationFailed', `Cannot start replication: ${(error as Error).message}`);
      await holder?.release();
      if (!callback.gone.aborted) {
        await source.end().catch(() => undefined);
        throw error;
      }
      // The workflow gave up on this task and went on to its Cleanup, perhaps before the slot
      // existed: what this attempt created would be left behind.
      const removed = await removeCreated(source, Boolean(holder), publicationCreated);
      await source.end().catch(() => undefined);
      if (removed) throw new TaskGoneError(`${goneReason(callback.gone)}; ${removed}`);
      throw goneError(error, callback.gone, 'it created no replication slot');
    }
    await source.end().catch(() => undefined);

    // The full load imports the snapshot; keep it until every unit is copied (a failed unit is redone on it).
    if (holder) {
      while (!stop.signal.aborted && spec.mode !== 'cdc') {
        const { rows } = await control.query<{ waiting: boolean; phase: string }>(
          `SELECT m.phase,
                  m.phase = 'schema' OR m.phase = 'load' AND (NOT EXISTS (SELECT 1 FROM pgferry.units u WHERE u.migration = m.name)
                    OR EXISTS (SELECT 1 FROM pgferry.units u WHERE u.migration = m.name AND u.state <> 'done')) AS waiting
             FROM pgferry.migrations m WHERE m.name = $1`,
          [migration],
        );
        if (!rows[0]?.waiting) break;
        await sleep(POLL_MS);
      }
      await holder.release();
      log('snapshot released');
    }
    // Apply starts once post-data has built the keys (BeginApply).
    while (!stop.signal.aborted) {
      const status = await readReplicationStatus(control, migration);
      if (status?.applyRequested) return;
      const state = await migrationState(control, migration);
      if (!state || state.phase === 'failed' || state.phase === 'done') {
        stop.abort();
        return;
      }
      await sleep(POLL_MS);
    }
  }
});

/**
 * StartReplication's slot lifecycle: the publication and the slot with its exported snapshot
 * are created, registered in the control schema and reported to the workflow; if the workflow
 * gave up on the task meanwhile (a timeout, after which its Cleanup may already have run),
 * nothing more is created and what was created is dropped again.
 */
import type pg from 'pg';
import { dataTables, listTables } from '../catalog/tables.js';
import { CAPTURE_TABLE, removeDdlCapture, setUpDdlCapture } from '../cdc/ddl/capture.js';
import { createSlotWithSnapshot, dropSlotAndPublication, ensurePublication, replicationNames, slotState, type SlotHolder } from '../cdc/slot.js';
import { registerReplication } from '../control/index.js';
import { publishedTables } from '../cdc/row-filter.js';
import { recordSnapshot } from '../control/index.js';
import { PgferryError } from '../errors.js';
import type { MigrationSpec } from '../spec/index.js';
import { quoteIdent } from '../sql.js';
import { connectReplication, type StreamConfig } from './replication.js';
import { goneError, goneReason, TaskGoneError, throwIfGone, type CallbackStepContext } from './task.js';

/** What this attempt created, as far as it got. */
interface Created {
  publication: boolean;
  /** The new slot's connection, holding its exported snapshot. */
  holder?: SlotHolder;
}

/**
 * Opens the slot the migration streams from and reports it; returns the holder of its exported
 * snapshot (none when an existing slot is resumed). A failure is reported to the workflow.
 */
export async function openSlot(context: CallbackStepContext, control: pg.Client, streamConfig: StreamConfig): Promise<SlotHolder | undefined> {
  const { spec, callback, gone } = context;
  const source = await context.connectSource();
  const created: Created = { publication: false };
  try {
    await createAndReport(context, source, control, streamConfig, created);
  } catch (error) {
    await callback.reportFailure(error instanceof PgferryError ? error.name : 'pgferry.ReplicationFailed', `Cannot start replication: ${(error as Error).message}`);
    await created.holder?.release();
    if (!gone.aborted) {
      await source.end().catch(() => undefined);
      throw error;
    }
    // The workflow gave up on this task and went on to its Cleanup, perhaps before the slot
    // existed: what this attempt created would be left behind.
    const removed = await removeCreated(spec, source, created);
    await source.end().catch(() => undefined);
    if (removed) throw new TaskGoneError(`${goneReason(gone)}; ${removed}`);
    throw goneError(error, gone, 'it created no replication slot');
  }
  await source.end().catch(() => undefined);
  return created.holder;
}

async function createAndReport(
  { migration, spec, log, callback, gone }: CallbackStepContext,
  source: pg.Client,
  control: pg.Client,
  streamConfig: StreamConfig,
  created: Created,
): Promise<void> {
  const { slotName, publicationName } = replicationNames(spec);
  const tables = dataTables(await listTables(source, spec.objects));
  throwIfGone(gone, 'not starting replication');
  // Before the slot: no schema change after its consistent point may go unseen.
  const captured = await setUpDdlCapture(source, publicationName, { mode: spec.cdc.ddl, selection: spec.objects, log });
  // Row filters and column lists where the publication carries them exactly (PostgreSQL 15+; cdc/row-filter.ts).
  const filtered = await publishedTables(source, spec.objects, tables);
  const published = captured ? [...filtered, CAPTURE_TABLE] : filtered;
  created.publication = (await ensurePublication(source, { name: publicationName, tables: published })) === 'created';
  const existing = await slotState(source, slotName);
  let consistentLsn: string | null;
  let snapshot: string | undefined;
  if (existing.exists && spec.cdc.resumeSlot && spec.mode === 'cdc') {
    consistentLsn = existing.confirmedFlushLsn;
    log(`resuming existing slot ${slotName} at ${consistentLsn}`);
  } else {
    throwIfGone(gone, `not creating replication slot ${slotName}`);
    created.holder = await createSlotWithSnapshot(() => connectReplication(streamConfig), slotName);
    consistentLsn = created.holder.slot.consistentLsn;
    snapshot = created.holder.slot.snapshot;
    log(`created slot ${slotName} at ${consistentLsn} with snapshot ${snapshot}`);
  }
  throwIfGone(gone, `not using replication slot ${slotName}`);
  await registerReplication(control, migration, { slotName, publicationName, consistentLsn });
  await recordSnapshot(control, migration, snapshot ?? null);
  await callback.success({ slotName, publicationName, consistentLsn, ...(snapshot ? { snapshot } : {}) });
}

/** Drops the slot and publication this attempt created; says what it did, for the task's last line (undefined: it created none). */
async function removeCreated(spec: MigrationSpec, source: pg.Client, created: Created): Promise<string | undefined> {
  const { slotName, publicationName } = replicationNames(spec);
  const slotCreated = Boolean(created.holder);
  if (!slotCreated && !created.publication) return undefined;
  const what = slotCreated ? `replication slot ${slotName}` : `publication ${publicationName}`;
  if (spec.cdc.keepSlotOnFailure) return `kept the ${what} it had created (cdc.keepSlotOnFailure)`;
  try {
    if (slotCreated) {
      const dropped = await dropSlotAndPublication(source, { slotName, publicationName });
      const names = [dropped.slotDropped && `replication slot ${slotName}`, dropped.publicationDropped && `publication ${publicationName}`].filter(Boolean);
      return names.length ? `dropped the ${names.join(' and the ')} it had created` : `the ${what} it had created was already gone`;
    }
    await dropPublication(source, publicationName);
    return `dropped the publication ${publicationName} it had created`;
  } catch (error) {
    return `could not drop the ${what} it had created, drop it by hand: ${(error as Error).message}`;
  }
}

/** The publication alone: a slot this attempt did not create (a resumed one) stays. */
async function dropPublication(source: pg.Client, name: string): Promise<void> {
  await source.query(`DROP PUBLICATION IF EXISTS ${quoteIdent(name)}`);
  await removeDdlCapture(source, name);
}

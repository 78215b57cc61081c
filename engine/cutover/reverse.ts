/**
 * Reverse replication (cutover.reverse): after cutover, the changes applications make on the
 * target flow back to the source through a slot and publication on the target, applied by the
 * same replicator with the sides swapped (engine/steps/reverse-replication.ts), so `fallback`
 * can return to the source without losing a write. The building blocks the workflow and CLI use:
 * arm at cutover, drain and set sequences back at fallback, end at finish, and the status.
 * Loops are prevented with replication origins (engine/cdc/origin.ts).
 */
import type pg from 'pg';
import { dataTables, listTables, tableKey, type TableRef } from '../catalog/tables.js';
import { dropOrigins, originFamily, type OriginOptions } from '../cdc/origin.js';
import { dropSlotAndPublication, ensurePublication, replicationNames, slotState } from '../cdc/slot.js';
import {
  deleteReverseRun,
  dropControlSchema,
  ensureControlSchema,
  namesMapped,
  otherMigrations,
  readReplicationStatus,
  registerReverseRun,
  requestCutover,
  reverseRunRegistered,
  setDrainLsn,
  stopReverseRun,
} from '../control/index.js';
import { PgferryError } from '../errors.js';
import { InverseNames, NameMap, type Names } from '../schema/mapping.js';
import { copySequenceValues } from '../schema/sequences.js';
import type { SchemaObjectResult } from '../schema/objects.js';
import type { MigrationSpec } from '../spec/index.js';
import { messageOf, pollUntil } from '../sql.js';
import { stopApplier } from '../cdc/streamer-lock.js';
import { writeThroughFence } from './fence.js';
import { markDrainPoint } from './index.js';

/** Names of the reverse direction: slot and publication on the target, and the origins of both appliers. */
export interface ReverseNames {
  /** Logical slot on the target the reverse stream reads. */
  slotName: string;
  /** Publication on the target of the migrated tables. */
  publicationName: string;
  /** Origin of the forward applier's transactions (on the target). */
  forwardOrigin: string;
  /** Origin of the reverse applier's transactions (on the source). */
  reverseOrigin: string;
}

/** Room for a suffix: every name (early-apply origins' `_N` included) stays within 63 bytes. */
const BASE_LENGTH = 55;

/** The reverse direction's names, derived from the forward slot and publication names (ASCII, at most 63 bytes). */
export function reverseReplicationNames(spec: { name: string; cdc: { slotName?: string; publicationName?: string } }): ReverseNames {
  const forward = replicationNames(spec);
  const base = forward.slotName.slice(0, BASE_LENGTH);
  return {
    slotName: `${base}_rev`,
    publicationName: `${forward.publicationName.slice(0, BASE_LENGTH)}_rev`,
    forwardOrigin: `${base}_fwd`,
    reverseOrigin: `${base}_rev`,
  };
}

/**
 * How each direction's applier marks its transactions and which it skips (engine/cdc/origin.ts):
 * the forward one (with cutover.reverse) skips the reverse applier's, the reverse one the
 * forward applier's, so no change can loop.
 */
export function forwardOrigin(spec: MigrationSpec): OriginOptions {
  const names = reverseReplicationNames(spec);
  return { name: names.forwardOrigin, skipOrigins: originFamily(names.reverseOrigin) };
}

export function reverseOrigin(spec: MigrationSpec): OriginOptions {
  const names = reverseReplicationNames(spec);
  return { name: names.reverseOrigin, skipOrigins: originFamily(names.forwardOrigin) };
}

/** Armed reverse replication: where it streams from, and from which target LSN on. */
export interface ArmedReverse {
  slotName: string;
  publicationName: string;
  /** The reverse slot's consistent point: every target transaction committed after it goes back to the source. */
  switchLsn: string;
}

/**
 * Arms reverse replication; call after the forward slot is dropped and before applications may
 * write to the target. Creates the control schema on the source with the migration's reverse run
 * registered (starting at the reverse slot's consistent point), a publication on the target of
 * the tables the forward publication carried, and a logical slot on the target. Idempotent: an
 * armed reverse run is returned as it is.
 */
export async function armReverse(spec: MigrationSpec, source: pg.Client, target: pg.Client): Promise<ArmedReverse> {
  const names = reverseReplicationNames(spec);
  await writeThroughFence(source);
  await ensureControlSchema(source);
  const tables = await migratedTargetTables(spec, source, target);
  const { rows } = await target.query<{ schema: string; name: string }>(
    `SELECT n.nspname AS schema, c.relname AS name FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relkind IN ('r', 'p')`,
  );
  const onTarget = new Set(rows.map(tableKey));
  const missing = tables.filter((table) => !onTarget.has(tableKey(table))).map(tableKey);
  if (missing.length > 0) {
    throw new PgferryError(
      'pgferry.ReverseTablesMissing',
      `Cannot arm reverse replication: ${missing.length} migrated table(s) are not on the target (${missing.slice(0, 20).join(', ')}); ` +
        'create them on the target, or set cutover.reverse to false.',
    );
  }
  await ensurePublication(target, { name: names.publicationName, tables }).catch((error: unknown) => {
    // ensurePublication speaks of the source (where the forward publication is): say what this one is.
    const reason = messageOf((error as { cause?: unknown }).cause ?? error);
    throw new PgferryError('pgferry.ReverseArmFailed', `Cannot create publication ${names.publicationName} on the target for reverse replication: ${reason}.`, { cause: error });
  });
  const existing = await slotState(target, names.slotName);
  const registered = await reverseRunRegistered(source, spec.name);
  if (existing.exists && registered) {
    const status = await readReplicationStatus(source, spec.name);
    if (status?.slotName === names.slotName && status.consistentLsn) {
      return { slotName: names.slotName, publicationName: names.publicationName, switchLsn: status.consistentLsn };
    }
  }
  // A slot nobody has read from still starts at its consistent point (an arm that failed after creating it).
  const switchLsn = existing.exists ? existing.confirmedFlushLsn! : await createReverseSlot(target, names.slotName);
  await registerReverseRun(source, spec.name, spec, { slotName: names.slotName, publicationName: names.publicationName, consistentLsn: switchLsn });
  return { slotName: names.slotName, publicationName: names.publicationName, switchLsn };
}

/** A logical pgoutput slot on the target; its consistent point. */
async function createReverseSlot(target: pg.Client, slotName: string): Promise<string> {
  try {
    const { rows } = await target.query<{ lsn: string }>("SELECT lsn::text FROM pg_create_logical_replication_slot($1, 'pgoutput')", [slotName]);
    return rows[0]!.lsn;
  } catch (error) {
    throw new PgferryError(
      'pgferry.ReverseArmFailed',
      `Cannot create replication slot ${slotName} on the target for reverse replication: ${messageOf(error)}. ` +
        'The target needs wal_level = logical (rds.logical_replication = 1 on RDS), a free max_replication_slots, and a user with REPLICATION (rds_replication on RDS).',
      { cause: error },
    );
  }
}

/**
 * Drains the reverse stream for fallback; the caller has fenced the target. Marks a drain point
 * on the target, asks the reverse streamer (through the source's control schema) to drain to it,
 * and waits until it has applied everything up to it on the source. Returns the drain LSN.
 */
export async function drainReverse(spec: MigrationSpec, source: pg.Client, target: pg.Client, { timeoutMs }: { timeoutMs: number }): Promise<string> {
  if (!(await reverseRunRegistered(source, spec.name))) {
    throw new PgferryError(
      'pgferry.ReverseNotArmed',
      `Migration ${spec.name} has no reverse replication on the source to drain: it is armed at cutover when the spec sets cutover.reverse: true (with cutover.fenceSource: true).`,
    );
  }
  const drainLsn = await markDrainPoint(target);
  await writeThroughFence(source);
  await requestCutover(source, spec.name);
  await setDrainLsn(source, spec.name, drainLsn);
  const drained = await pollUntil(async () => ((await readReplicationStatus(source, spec.name))?.drained ? true : undefined), { intervalMs: 250, timeoutMs });
  if (!drained) {
    const status = await readReplicationStatus(source, spec.name);
    throw new PgferryError(
      'pgferry.ReverseDrainTimeout',
      `The reverse stream did not drain to ${drainLsn} within ${Math.round(timeoutMs / 1000)} s: it has applied up to ${status?.appliedLsn ?? 'nothing'} ` +
        `(last heartbeat ${status?.heartbeatAgeSeconds === null || status?.heartbeatAgeSeconds === undefined ? 'never' : `${Math.round(status.heartbeatAgeSeconds)} s ago`}` +
        `${status?.lastError ? `, last error: ${status.lastError}` : ''}). Check that the reverse replication task runs, then run the fallback again: both sides stay fenced meanwhile.`,
    );
  }
  return drainLsn;
}

/** The migrated tables with rows, as the target names them (name mapping renamed them before any change was applied). */
export async function migratedTargetTables(spec: MigrationSpec, source: pg.Client, target: pg.Client): Promise<TableRef[]> {
  const mapping = (await namesMapped(target, spec.name)) ? NameMap.of(spec) : NameMap.IDENTITY;
  return dataTables(await listTables(source, spec.objects)).map((table) => mapping.table(table));
}

/**
 * The reverse stream's names: the target's tables and columns back to the source's, when name
 * mapping renamed them. `source` and `target` are the migration's (not the reverse stream's).
 */
export async function reverseNames(spec: MigrationSpec, source: pg.Client, target: pg.Client): Promise<Names> {
  const names = NameMap.of(spec);
  if (names.identity || !(await namesMapped(target, spec.name))) return NameMap.IDENTITY;
  return new InverseNames(names, dataTables(await listTables(source, spec.objects)));
}

/** Sets the source's sequences to the target's values (fallback: the source continues where the target is). */
export async function copySequencesBack(spec: MigrationSpec, source: pg.Client, target: pg.Client): Promise<SchemaObjectResult[]> {
  await writeThroughFence(source);
  return copySequenceValues(source, target, spec, { back: true });
}

/** How long endReverse waits for the reverse streamer to stop on its own. */
const STOP_WAIT_MS = 10_000;

/** What endReverse removed. */
export interface EndedReverse {
  slotDropped: boolean;
  publicationDropped: boolean;
  /** Origins dropped, on either side. */
  originsDropped: string[];
  /** Control schemas dropped (dropControl). */
  controlDropped: { source: boolean; target: boolean };
  /** Why a control schema was kept despite dropControl: other migrations are registered in it. */
  controlKept: string[];
}

/**
 * Ends reverse replication (finish, or after fallback): stops the reverse streamer, drops the
 * slot and publication on the target and the origins of both directions, deletes the reverse
 * run from the source's control schema and, with dropControl, drops the control schema on both
 * sides (kept where other migrations are registered). Idempotent.
 */
export async function endReverse(spec: MigrationSpec, source: pg.Client, target: pg.Client, { dropControl = false }: { dropControl?: boolean } = {}): Promise<EndedReverse> {
  const names = reverseReplicationNames(spec);
  // After a fallback the target is fenced, and the source may still be.
  await writeThroughFence(source);
  await writeThroughFence(target);
  // The streamer stops at its next heartbeat; one that does not is ended.
  if (await stopReverseRun(source, spec.name)) await stopApplier(source, spec.name, STOP_WAIT_MS);
  const dropped = await dropSlotAndPublication(target, names);
  const originsDropped = await dropMigrationOrigins(spec, source, target);
  await deleteReverseRun(source, spec.name);
  const control = dropControl ? await dropControlSchemas(spec, source, target) : { controlDropped: { source: false, target: false }, controlKept: [] };
  return { slotDropped: dropped.slotDropped, publicationDropped: dropped.publicationDropped, originsDropped, ...control };
}

/** Drops the control schema on both sides, except where other migrations are registered in it (`controlKept` says which). */
export async function dropControlSchemas(
  spec: MigrationSpec,
  source: pg.Client,
  target: pg.Client,
): Promise<Pick<EndedReverse, 'controlDropped' | 'controlKept'>> {
  const controlDropped = { source: false, target: false };
  const controlKept: string[] = [];
  for (const [side, client] of [['source', source], ['target', target]] as const) {
    const others = await otherMigrations(client, spec.name);
    if (others.length > 0) controlKept.push(`the ${side}'s control schema holds other migrations (${others.slice(0, 10).join(', ')})`);
    else controlDropped[side] = await dropControlSchema(client);
  }
  return { controlDropped, controlKept };
}

/** Drops the replication origins of both directions (forward on the target, reverse on the source); for endReverse and Cleanup. */
export async function dropMigrationOrigins(spec: MigrationSpec, source: pg.Client, target: pg.Client): Promise<string[]> {
  const names = reverseReplicationNames(spec);
  const onSource = await dropOrigins(source, originFamily(names.reverseOrigin));
  const onTarget = await dropOrigins(target, originFamily(names.forwardOrigin));
  return [...onSource, ...onTarget];
}

/** The reverse stream as `pgferry status` shows it. */
export interface ReverseStatus {
  slotName: string;
  /** Seconds since the oldest target commit not yet on the source (0 when nothing waits). */
  lagSeconds: number | null;
  /** Bytes of target WAL not yet processed. */
  lagBytes: number | null;
  /** The target LSN the source holds. */
  appliedLsn: string | null;
  rowsApplied: number;
  /** A fallback's drain point, once asked for, and whether the source has everything up to it. */
  drainLsn: string | null;
  drained: boolean;
  /** Seconds since the reverse streamer's last heartbeat (null: it has not beaten yet). */
  heartbeatAgeSeconds: number | null;
  lastError: string | null;
}

/** The reverse stream's state from the source's control schema; undefined when none is armed. */
export async function readReverseStatus(source: pg.Client, migration: string): Promise<ReverseStatus | undefined> {
  if (!(await reverseRunRegistered(source, migration))) return undefined;
  const status = await readReplicationStatus(source, migration);
  if (!status) return undefined;
  return {
    slotName: status.slotName,
    lagSeconds: status.lagSeconds,
    lagBytes: status.lagBytes,
    appliedLsn: status.appliedLsn,
    rowsApplied: status.rowsApplied,
    drainLsn: status.drainLsn,
    drained: status.drained,
    heartbeatAgeSeconds: status.heartbeatAgeSeconds,
    lastError: status.lastError,
  };
}

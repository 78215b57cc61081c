/**
 * The WAL the migration's replication slot holds back on the source. A slot keeps every WAL
 * segment from its restart_lsn on until the migration has applied it, so a slot that is not
 * read (a long load, a paused run, a streamer far behind) grows the source's pg_wal without
 * bound — or, with max_slot_wal_keep_size set, is invalidated and the migration lost.
 *
 * measureRetainedWal reads it; assessRetainedWal says whether it is over the spec's threshold;
 * checkRetainedWal does both, records it in the control schema and records an event when the
 * threshold is crossed or the slot is lost. Whoever holds the slot calls checkRetainedWal: the
 * streamer's heartbeat, the snapshot holder during the load, the paused run's loop.
 */
import type pg from 'pg';
import { formatBytes } from '../bytes.js';
import { serverVersion } from '../connect/index.js';
import { recordEvent } from '../control/events.js';
import { setPhase } from '../control/migrations.js';
import { recordRetainedWal, type RetainedWalState } from '../control/retained-wal.js';
import { PgferryError } from '../errors.js';
import { dropSlotAndPublication } from './slot.js';

export type { RetainedWalState };

/** pg_replication_slots.wal_status (PostgreSQL 13+). */
export type WalStatus = 'reserved' | 'extended' | 'unreserved' | 'lost';

export interface RetainedWal {
  slotName: string;
  /** The slot exists on the source. */
  exists: boolean;
  /** WAL the slot holds back: from its restart_lsn to the source's current WAL position (null: no slot, or invalidated). */
  bytes: number | null;
  /** pg_replication_slots.wal_status; null before PostgreSQL 13 or without a slot. */
  walStatus: WalStatus | null;
  /** safe_wal_size: WAL that can still be written before the slot is in danger of invalidation (null without max_slot_wal_keep_size). */
  safeWalSizeBytes: number | null;
  /** max_slot_wal_keep_size in bytes; null when unlimited (-1) or before PostgreSQL 13. */
  maxSlotWalKeepSizeBytes: number | null;
  /** bytes as a share of max_slot_wal_keep_size (0.5 = half); null without that limit. */
  keepSizeShare: number | null;
  /** The slot can no longer stream: it was invalidated, or it no longer exists. */
  lost: boolean;
  /** Why it was invalidated, as PostgreSQL names it (wal_removed, rows_removed, wal_level_insufficient, idle_timeout), or "dropped". */
  invalidationReason: string | null;
}

/** Columns of pg_replication_slots by the version that has them. */
function slotColumns(version: number): string {
  const keepSize = `(SELECT CASE WHEN setting::bigint < 0 THEN NULL ELSE pg_size_bytes(setting || unit)::float8 END
                       FROM pg_settings WHERE name = 'max_slot_wal_keep_size')`;
  return [
    version >= 130000 ? 's.wal_status, s.safe_wal_size::float8 AS safe_wal_size' : 'NULL::text AS wal_status, NULL::float8 AS safe_wal_size',
    version >= 130000 ? `${keepSize} AS keep_size` : 'NULL::float8 AS keep_size',
    version >= 170000 ? 's.invalidation_reason' : 'NULL::text AS invalidation_reason',
    // PG 16 marks a logical slot invalidated by a conflict with recovery (rows_removed or wal_level_insufficient).
    version >= 160000 ? 's.conflicting' : 'NULL::boolean AS conflicting',
  ].join(', ');
}

/** Reads the WAL `slotName` holds back on `source` (one query on pg_replication_slots; cheap). */
export async function measureRetainedWal(source: pg.Client, slotName: string): Promise<RetainedWal> {
  const version = await serverVersion(source);
  const { rows } = await source.query<{
    exists: boolean;
    bytes: number | null;
    wal_status: WalStatus | null;
    safe_wal_size: number | null;
    keep_size: number | null;
    invalidation_reason: string | null;
    conflicting: boolean | null;
  }>(
    `SELECT s.slot_name IS NOT NULL AS exists,
            pg_wal_lsn_diff(CASE WHEN pg_is_in_recovery() THEN pg_last_wal_receive_lsn() ELSE pg_current_wal_lsn() END, s.restart_lsn)::float8 AS bytes,
            ${slotColumns(version)}
       FROM (SELECT 1) AS one LEFT JOIN pg_replication_slots s ON s.slot_name = $1`,
    [slotName],
  );
  const row = rows[0]!;
  const invalidationReason = !row.exists
    ? 'dropped'
    : (row.invalidation_reason ?? (row.wal_status === 'lost' ? 'wal_removed' : row.conflicting ? 'conflict with recovery' : null));
  const bytes = row.exists && row.bytes !== null ? Math.max(0, row.bytes) : null;
  return {
    slotName,
    exists: row.exists,
    bytes,
    walStatus: row.wal_status,
    safeWalSizeBytes: row.safe_wal_size,
    maxSlotWalKeepSizeBytes: row.keep_size,
    keepSizeShare: bytes !== null && row.keep_size ? bytes / row.keep_size : null,
    lost: invalidationReason !== null,
    invalidationReason,
  };
}

/** Without cdc.maxRetainedWal, the slot is over its threshold once it holds this share of max_slot_wal_keep_size. */
export const KEEP_SIZE_WARNING_SHARE = 0.8;

export interface RetainedWalThreshold {
  /** cdc.maxRetainedWal in bytes, when the spec sets it. */
  maxRetainedWalBytes?: number;
}

/**
 * Over the threshold when the slot holds more than cdc.maxRetainedWal, or (set or not) when
 * PostgreSQL itself is about to invalidate it: 80% of max_slot_wal_keep_size, or wal_status
 * `unreserved`. Lost when it was invalidated or dropped. Pure.
 */
export function assessRetainedWal(wal: RetainedWal, { maxRetainedWalBytes }: RetainedWalThreshold): RetainedWalState {
  if (wal.lost) return 'lost';
  if (maxRetainedWalBytes !== undefined && (wal.bytes ?? 0) > maxRetainedWalBytes) return 'over';
  if ((wal.keepSizeShare ?? 0) >= KEEP_SIZE_WARNING_SHARE || wal.walStatus === 'unreserved') return 'over';
  return 'ok';
}

/** The slot was invalidated or dropped: its changes are gone, and streaming on would leave a gap. */
export class SlotLostError extends PgferryError {
  constructor(message: string) {
    super('pgferry.SlotLost', message);
  }
}

/**
 * Throws SlotLostError, saying that a reload is needed, when `slotName` was invalidated or
 * dropped: starting to stream from it would only fail, again and again, until the retry window ends.
 */
export async function assertSlotUsable(source: pg.Client, slotName: string): Promise<void> {
  const wal = await measureRetainedWal(source, slotName);
  if (wal.lost) throw new SlotLostError(retainedWalMessage(wal, 'lost', {}));
}

/** The slot holds more than cdc.maxRetainedWal and the spec asked to drop it then (cdc.dropSlotAboveMaxRetainedWal). */
export class RetainedWalExceededError extends PgferryError {
  constructor(message: string) {
    super('pgferry.RetainedWalExceeded', message);
  }
}

export interface RetainedWalCheck {
  migration: string;
  slotName: string;
  /** cdc.maxRetainedWal in bytes. */
  maxRetainedWalBytes?: number;
  /** cdc.dropSlotAboveMaxRetainedWal: above maxRetainedWal, checkRetainedWal throws RetainedWalExceededError. */
  dropSlotAboveMaxRetainedWal: boolean;
  /** Told every reading (metrics); what it throws is ignored. */
  onReading?: (reading: RetainedWalReading) => void;
  /** Told every reading with the control session: the migration's alert topic (engine/alerts/); never throws. */
  alert?: (control: pg.Client, reading: RetainedWalReading) => Promise<void>;
}

/** One measurement with its assessment, for observers (metrics). */
export interface RetainedWalReading extends RetainedWal {
  state: RetainedWalState;
}

const share = (wal: RetainedWal) =>
  wal.keepSizeShare !== null ? `, ${Math.round(wal.keepSizeShare * 100)}% of max_slot_wal_keep_size (${formatBytes(wal.maxSlotWalKeepSizeBytes!)})` : '';

/** What a person reads when the slot crosses the threshold or is lost: the slot, the bytes, the threshold and what to do. */
export function retainedWalMessage(wal: RetainedWal, state: RetainedWalState, check: Pick<RetainedWalCheck, 'maxRetainedWalBytes'>): string {
  if (state === 'lost') {
    const why = wal.invalidationReason === 'dropped' ? 'no longer exists on the source' : `was invalidated by the source (${wal.invalidationReason})`;
    return `Replication slot ${wal.slotName} ${why}: the changes since the migration's last applied position are gone, so CDC cannot go on without a gap. A full reload is needed: run the migration again.`;
  }
  const limits = [
    check.maxRetainedWalBytes !== undefined && (wal.bytes ?? 0) > check.maxRetainedWalBytes && `above cdc.maxRetainedWal (${formatBytes(check.maxRetainedWalBytes)})`,
    wal.walStatus === 'unreserved' && 'beyond max_wal_size (wal_status unreserved: the next checkpoint may invalidate the slot)',
  ].filter(Boolean);
  return (
    `Replication slot ${wal.slotName} holds back ${formatBytes(wal.bytes ?? 0)} of WAL on the source${share(wal)}` +
    `${limits.length ? `, ${limits.join(', ')}` : ''}. The source keeps this WAL until the migration applies it: ` +
    'resume or cut over soon (pgferry resume SPEC, pgferry cutover SPEC), raise max_slot_wal_keep_size or the source\'s disk before it fills, ' +
    'or abandon the migration and free the WAL with "pgferry stop SPEC --drop".'
  );
}

/**
 * Measures the slot, records it in the control schema, and records an event when it crosses
 * the threshold or is lost (once: not again until it was back under). Throws
 * RetainedWalExceededError when it holds more than cdc.maxRetainedWal and the spec asked to drop
 * the slot then: the caller stops using the slot, then calls dropSlotOverRetainedWal.
 */
export async function checkRetainedWal(source: pg.Client, control: pg.Client, check: RetainedWalCheck): Promise<RetainedWalReading> {
  const wal = await measureRetainedWal(source, check.slotName);
  const state = assessRetainedWal(wal, check);
  const previous = await recordRetainedWal(control, check.migration, { ...wal, state, thresholdBytes: check.maxRetainedWalBytes ?? null });
  if (state !== 'ok' && state !== previous) {
    await recordEvent(control, check.migration, state === 'lost' ? 'error' : 'warn', retainedWalMessage(wal, state, check));
  }
  try {
    check.onReading?.({ ...wal, state });
  } catch {
    // An observer never stops the migration.
  }
  await check.alert?.(control, { ...wal, state });
  if (state === 'over' && check.dropSlotAboveMaxRetainedWal && check.maxRetainedWalBytes !== undefined && (wal.bytes ?? 0) > check.maxRetainedWalBytes) {
    throw new RetainedWalExceededError(
      `Replication slot ${wal.slotName} held back ${formatBytes(wal.bytes ?? 0)} of WAL on the source, above cdc.maxRetainedWal ` +
        `(${formatBytes(check.maxRetainedWalBytes)}); as cdc.dropSlotAboveMaxRetainedWal asks, the migration failed and the slot was dropped to free the source's WAL. ` +
        'Run the migration again (a full reload) when the source can hold the WAL of the whole load, or raise cdc.maxRetainedWal.',
    );
  }
  return { ...wal, state };
}

/**
 * After a RetainedWalExceededError, once nothing uses the slot any more: drops the slot and
 * publication, marks the migration failed with the error's message, and records the event.
 */
export async function dropSlotOverRetainedWal(
  source: pg.Client,
  control: pg.Client,
  names: { migration: string; slotName: string; publicationName: string },
  error: RetainedWalExceededError,
): Promise<void> {
  await dropSlotAndPublication(source, names);
  await setPhase(control, names.migration, 'failed', error.message);
  await recordEvent(control, names.migration, 'error', error.message);
}

import { describe, expect, it } from 'vitest';
import { formatReport, formatStatus, progressDetail, retainedWalLines } from '../../bin/format.js';
import { assessRetainedWal, retainedWalMessage, type RetainedWal } from '../../engine/cdc/retained-wal.js';
import type { RetainedWalRow } from '../../engine/control/index.js';
import { reportOf } from '../../engine/report.js';
import { migrationStatus } from '../../engine/status.js';
import { replicationStatusRow } from '../support/replication-status.js';

const GB = 1024 ** 3;

const wal = (overrides: Partial<RetainedWal> = {}): RetainedWal => ({
  slotName: 'pgferry_shop',
  exists: true,
  bytes: 2 * GB,
  walStatus: 'reserved',
  safeWalSizeBytes: null,
  maxSlotWalKeepSizeBytes: null,
  keepSizeShare: null,
  lost: false,
  invalidationReason: null,
  ...overrides,
});

const row = (overrides: Partial<RetainedWalRow> = {}): RetainedWalRow => ({
  bytes: 2 * GB,
  peakBytes: 3 * GB,
  walStatus: 'reserved',
  safeWalSizeBytes: null,
  maxSlotWalKeepSizeBytes: null,
  keepSizeShare: null,
  invalidationReason: null,
  state: 'ok',
  thresholdBytes: null,
  ageSeconds: 5,
  ...overrides,
});

describe('assessRetainedWal', () => {
  it('is over above cdc.maxRetainedWal, not at it', () => {
    expect(assessRetainedWal(wal(), { maxRetainedWalBytes: GB })).toBe('over');
    expect(assessRetainedWal(wal({ bytes: GB }), { maxRetainedWalBytes: GB })).toBe('ok');
  });

  it('without a threshold, is over at 80% of max_slot_wal_keep_size or once wal_status is unreserved', () => {
    expect(assessRetainedWal(wal(), {})).toBe('ok');
    expect(assessRetainedWal(wal({ maxSlotWalKeepSizeBytes: 10 * GB, keepSizeShare: 0.79 }), {})).toBe('ok');
    expect(assessRetainedWal(wal({ maxSlotWalKeepSizeBytes: 10 * GB, keepSizeShare: 0.8 }), { maxRetainedWalBytes: 100 * GB })).toBe('over');
    expect(assessRetainedWal(wal({ walStatus: 'unreserved' }), {})).toBe('over');
  });

  it('is lost when the slot was invalidated or dropped, whatever the bytes', () => {
    expect(assessRetainedWal(wal({ bytes: null, walStatus: 'lost', lost: true, invalidationReason: 'wal_removed' }), { maxRetainedWalBytes: GB })).toBe('lost');
    expect(assessRetainedWal(wal({ exists: false, bytes: null, walStatus: null, lost: true, invalidationReason: 'dropped' }), {})).toBe('lost');
  });
});

describe('retainedWalMessage', () => {
  it('names the slot, the bytes, the share of max_slot_wal_keep_size, the threshold and what to do', () => {
    const message = retainedWalMessage(wal({ maxSlotWalKeepSizeBytes: 4 * GB, keepSizeShare: 0.5 }), 'over', { maxRetainedWalBytes: GB });
    expect(message).toBe(
      'Replication slot pgferry_shop holds back 2.0 GB of WAL on the source, 50% of max_slot_wal_keep_size (4.0 GB), above cdc.maxRetainedWal (1.0 GB). ' +
        'The source keeps this WAL until the migration applies it: resume or cut over soon (pgferry resume SPEC, pgferry cutover SPEC), ' +
        'raise max_slot_wal_keep_size or the source\'s disk before it fills, or abandon the migration and free the WAL with "pgferry stop SPEC --drop".',
    );
  });

  it('says a lost slot needs a reload', () => {
    expect(retainedWalMessage(wal({ lost: true, invalidationReason: 'wal_removed' }), 'lost', {})).toBe(
      'Replication slot pgferry_shop was invalidated by the source (wal_removed): the changes since the migration\'s last applied position are gone, so CDC cannot go on without a gap. A full reload is needed: run the migration again.',
    );
  });
});

describe('retained WAL in status, the live progress and the report', () => {
  it('shows the bytes, and the share of max_slot_wal_keep_size when it is set', () => {
    expect(retainedWalLines(row())).toEqual(['slot WAL: 2.0 GB retained on the source']);
    expect(retainedWalLines(row({ maxSlotWalKeepSizeBytes: 8 * GB, keepSizeShare: 0.25, walStatus: 'extended' }))).toEqual([
      'slot WAL: 2.0 GB retained on the source (25% of max_slot_wal_keep_size 8.0 GB) · wal_status extended',
    ]);
  });

  it('says when the figure is old (nothing measured it for minutes)', () => {
    expect(retainedWalLines(row({ ageSeconds: 90 }))).toEqual(['slot WAL: 2.0 GB retained on the source']);
    expect(retainedWalLines(row({ ageSeconds: 600 }))).toEqual(['slot WAL: 2.0 GB retained on the source · measured 10 min ago']);
  });

  it('warns past the threshold, and says what a lost slot means', () => {
    expect(retainedWalLines(row({ state: 'over', thresholdBytes: GB }))).toEqual([
      'slot WAL: 2.0 GB retained on the source',
      '! over cdc.maxRetainedWal (1.0 GB): resume or cut over soon, raise max_slot_wal_keep_size, or abandon with "pgferry stop SPEC --drop"',
    ]);
    expect(retainedWalLines(row({ state: 'over', maxSlotWalKeepSizeBytes: 2.2 * GB, keepSizeShare: 0.9 }))[1]).toMatch(/^! near max_slot_wal_keep_size: /);
    expect(retainedWalLines(row({ state: 'lost', bytes: null, invalidationReason: 'wal_removed' }))).toEqual([
      '✗ replication slot lost (wal_removed): its changes are gone; a full reload is needed (run the migration again)',
    ]);
  });

  const progress = {
    name: 'shop',
    run: { execution: 'local:1', mode: 'full+cdc', phase: 'load' as const, error: null, startedAt: new Date('2026-01-01T00:00:00Z'), finishedAt: null, seconds: 10 },
    tables: [],
    loadSeconds: 0,
    comparisons: [],
    replication: replicationStatusRow({ streamingSince: null, applyRequested: false }),
    retainedWal: row({ state: 'over', thresholdBytes: GB }),
  };

  it('status and the live progress carry it, during the load too', () => {
    const text = formatStatus(migrationStatus(progress));
    expect(text).toContain('\n  slot WAL: 2.0 GB retained on the source\n  ! over cdc.maxRetainedWal (1.0 GB)');
    expect(progressDetail(progress)).toEqual([
      'CDC: slot created, waiting for the full load',
      'slot WAL: 2.0 GB retained on the source',
      expect.stringMatching(/^! over cdc.maxRetainedWal/),
    ]);
  });

  it('the report keeps the peak', () => {
    const report = reportOf(progress, [], []);
    expect(report.replication?.peakRetainedWalBytes).toBe(3 * GB);
    expect(formatReport(report)).toContain('; the slot held back at most 3.0 GB of WAL');
    const { retainedWal: _, ...unmeasured } = progress;
    expect(reportOf(unmeasured, [], []).replication).not.toHaveProperty('peakRetainedWalBytes');
  });
});

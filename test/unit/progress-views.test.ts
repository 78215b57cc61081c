import { describe, expect, it } from 'vitest';
import type { MigrationProgress, TableProgress } from '../../engine/control/index.js';
import { reportOf } from '../../engine/report.js';
import { migrationStatus } from '../../engine/status.js';
import { bar, progressDetail, progressLines } from '../../bin/format.js';
import { replicationStatusRow } from '../support/replication-status.js';

const MB = 1024 * 1024;

function tableProgress(name: string, extra: Partial<TableProgress> = {}): TableProgress {
  return {
    source: { schema: 'shop', name },
    target: { schema: 'shop', name },
    estimatedBytes: 4 * MB,
    units: 1,
    unitsDone: 0,
    copying: false,
    rows: 0,
    bytes: 0,
    bytesSoFar: 0,
    seconds: 0,
    ...extra,
  };
}

const replication = replicationStatusRow({
  transactionsApplied: 12,
  rowsApplied: 340,
  heartbeatAgeSeconds: 0.4,
  unhealthySeconds: 0.4,
  fenced: true,
  lagSeconds: 0.2,
  streamingSince: new Date('2026-01-01T00:00:00Z'),
  cutoverRequested: true,
  drainLsn: '0/2000000',
  drained: true,
  drainSeconds: 1.234,
  writeUnavailableSeconds: 2.345,
  targetReady: true,
  restarts: 1,
});

function progress(extra: Partial<MigrationProgress> = {}): MigrationProgress {
  return {
    name: 'shop-move',
    run: {
      execution: 'local:run-1',
      mode: 'full',
      phase: 'load',
      error: null,
      startedAt: new Date('2026-01-01T00:00:00Z'),
      finishedAt: null,
      seconds: 12.345,
    },
    tables: [],
    loadSeconds: 0,
    comparisons: [],
    ...extra,
  };
}

describe('bar', () => {
  it('fills its width in proportion, clamped to empty and full', () => {
    expect(bar(0, 4)).toBe('[░░░░]');
    expect(bar(0.5, 4)).toBe('[██░░]');
    expect(bar(1, 4)).toBe('[████]');
    expect(bar(-1, 4)).toBe('[░░░░]');
    expect(bar(2, 4)).toBe('[████]');
    expect(bar(0.5)).toHaveLength(24 + 2);
  });
});

describe('progressLines', () => {
  it('is empty without tables', () => {
    expect(progressLines([])).toEqual([]);
  });

  it('shows the overall bar by bytes, and a bar for each table being copied that has units left', () => {
    const lines = progressLines([
      { table: 'shop.orders', estimated: 4 * MB, copied: 2 * MB, done: 0, units: 2, running: true },
      { table: 'shop.items', estimated: 4 * MB, copied: 4 * MB, done: 1, units: 1, running: false },
      { table: 'shop.waiting', estimated: 2 * MB, copied: 0, done: 0, units: 1, running: false },
    ]);
    expect(lines).toEqual([`${bar(6 / 10)} 6.0 MB / ~10.0 MB · 1/3 tables`, `    ${bar(0.5, 16)} shop.orders 2.0 MB`]);
  });

  it('counts a table that outgrew its estimate at what was copied', () => {
    const [overall] = progressLines([{ table: 'shop.grown', estimated: MB, copied: 3 * MB, done: 0, units: 1, running: true }]);
    expect(overall).toBe(`${bar(1)} 3.0 MB / ~3.0 MB · 0/1 tables`);
  });

  it('measures by tables done when nothing was estimated', () => {
    const [overall] = progressLines([
      { table: 'shop.a', estimated: 0, copied: 0, done: 1, units: 1, running: false },
      { table: 'shop.b', estimated: 0, copied: 0, done: 0, units: 1, running: false },
    ]);
    expect(overall).toBe(`${bar(0.5)} 0 B / ~0 B · 1/2 tables`);
  });
});

describe('progressDetail (the live watch)', () => {
  it('shows nothing before the migration is known', () => {
    expect(progressDetail(undefined)).toEqual([]);
  });

  it('shows the load while units are left, from the bytes copied so far', () => {
    const lines = progressDetail(progress({ tables: [tableProgress('orders', { copying: true, bytesSoFar: MB })] }));
    expect(lines).toEqual(progressLines([{ table: 'shop.orders', estimated: 4 * MB, copied: MB, done: 0, units: 1, running: true }]));
  });

  it('drops the load bars once every unit is done, and shows the CDC line', () => {
    const done = tableProgress('orders', { unitsDone: 1, bytesSoFar: 4 * MB });
    const lines = progressDetail(progress({ tables: [done], replication }));
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(/^CDC: lag 0\.2 s/);
  });
});

describe('migrationStatus', () => {
  it('lists the tables with units and sums up the comparisons', () => {
    const status = migrationStatus(
      progress({
        run: { ...progress().run, phase: 'failed', error: 'boom' },
        tables: [
          tableProgress('orders', { units: 2, unitsDone: 1, rows: 10, bytes: 100 }),
          tableProgress('unplanned', { units: 0 }),
        ],
        comparisons: [
          { source: { schema: 'shop', name: 'items' }, status: 'mismatch', differences: 3 },
          { source: { schema: 'shop', name: 'orders' }, status: 'match', differences: 0 },
        ],
        replication,
      }),
    );
    expect(status).toEqual({
      name: 'shop-move',
      phase: 'failed',
      error: 'boom',
      tables: [{ table: 'shop.orders', unitsDone: 1, units: 2, rows: 10, bytes: 100 }],
      comparison: { tables: 2, matching: 1, differing: ['shop.items'] },
      replication,
    });
  });

  it('has no comparison or replication parts before there are any', () => {
    const status = migrationStatus(progress());
    expect(status).not.toHaveProperty('comparison');
    expect(status).not.toHaveProperty('replication');
  });
});

describe('reportOf', () => {
  it('reports each planned table with its comparison, the totals and the CDC figures, rounded to hundredths', () => {
    const report = reportOf(
      progress({
        run: { ...progress().run, phase: 'done', finishedAt: new Date('2026-01-01T00:00:12Z') },
        tables: [
          tableProgress('items', { rows: 100, bytes: 2 * MB, units: 2, unitsDone: 2, seconds: 1.004 }),
          tableProgress('orders', { rows: 50, bytes: 2 * MB, units: 1, unitsDone: 1, seconds: 2 }),
        ],
        loadSeconds: 3.999,
        comparisons: [{ source: { schema: 'shop', name: 'orders' }, status: 'mismatch', differences: 2 }],
        replication,
      }),
      [{ kind: 'table', counts: { created: 2 } }],
      [
        { kind: 'role', identity: 'app', status: 'not_migrated', detail: 'roles are not migrated' },
        { kind: 'table', identity: 'shop.scratch', status: 'skipped', detail: 'not selected by objects' },
      ],
    );
    expect(report).toEqual({
      migration: 'shop-move',
      execution: 'local:run-1',
      mode: 'full',
      phase: 'done',
      error: null,
      startedAt: '2026-01-01T00:00:00.000Z',
      finishedAt: '2026-01-01T00:00:12.000Z',
      seconds: 12.35,
      checklist: [
        expect.stringMatching(/^The source is fenced: .*pgferry finish SPEC lifts the fence/),
        expect.stringMatching(/^Sequences: none were set at cutover/),
        expect.stringMatching(/^Ownership and privileges/),
        expect.stringMatching(/^Application: point it at the target/),
        expect.stringMatching(/^Control schema: .*--drop-control/),
      ],
      objects: [{ kind: 'table', counts: { created: 2 } }],
      notMigrated: [{ kind: 'role', identity: 'app', detail: 'roles are not migrated' }],
      skipped: [{ kind: 'table', identity: 'shop.scratch', detail: 'not selected by objects' }],
      tables: [
        { table: 'shop.items', target: 'shop.items', rows: 100, bytes: 2 * MB, seconds: 1, mbPerSecond: 2, units: 2, compare: 'not compared', differences: 0 },
        { table: 'shop.orders', target: 'shop.orders', rows: 50, bytes: 2 * MB, seconds: 2, mbPerSecond: 1, units: 1, compare: 'mismatch', differences: 2 },
      ],
      totals: { tables: 2, rows: 150, bytes: 4 * MB, loadSeconds: 4, mbPerSecond: 1 },
      replication: {
        slot: 'pgferry_shop',
        consistentLsn: '0/1000000',
        appliedLsn: '0/2000000',
        transactions: 12,
        rows: 340,
        restarts: 1,
        fenced: true,
        drainSeconds: 1.23,
        writeUnavailableSeconds: 2.35,
      },
    });
  });

  it('has no CDC part without replication', () => {
    expect(reportOf(progress(), [], [])).not.toHaveProperty('replication');
  });
});

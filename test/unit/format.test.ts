import { describe, expect, it } from 'vitest';
import { EXIT_FAILED, EXIT_OK, EXIT_USAGE, exitCodeOf } from '../../bin/exit-codes.js';
import {
  bar,
  cleanupDone,
  describeRunResult,
  formatBytes,
  formatChecks,
  formatReplicationLine,
  formatReport,
  formatRun,
  formatStatus,
  describeCleanup,
  progressLines,
  type TableLoadProgress,
} from '../../bin/format.js';
import type { ReplicationStatusRow } from '../../engine/control/index.js';
import type { MigrationReport } from '../../engine/report.js';
import type { MigrationStatus } from '../../engine/status.js';
import type { RunDescription } from '../../platform/aws/executions.js';
import { replicationStatusRow } from '../support/replication-status.js';

const replication = (overrides: Partial<ReplicationStatusRow> = {}): ReplicationStatusRow =>
  replicationStatusRow({
    appliedAt: null,
    transactionsApplied: 1234,
    rowsApplied: 56789,
    receivedLsn: null,
    processedLsn: null,
    sourceLsn: null,
    heartbeatAgeSeconds: 1.25,
    unhealthySeconds: null,
    lagBytes: 2048,
    lagSeconds: 0.42,
    rowsPerSecond: 1500.4,
    streamingSince: new Date('2026-12-01T02:00:00Z'),
    ...overrides,
  });

describe('formatBytes', () => {
  it('shows bytes below a kilobyte as they are, and larger sizes in the largest unit under 1024 with one decimal', () => {
    expect(formatBytes(0)).toBe('0 B');
    expect(formatBytes(1023)).toBe('1023 B');
    expect(formatBytes(1024)).toBe('1.0 kB');
    expect(formatBytes(1536)).toBe('1.5 kB');
    expect(formatBytes(5 * 1024 * 1024)).toBe('5.0 MB');
    expect(formatBytes(3.25 * 1024 ** 3)).toBe('3.3 GB');
    expect(formatBytes(2 * 1024 ** 5)).toBe('2048.0 TB');
  });
});

describe('formatChecks', () => {
  it('marks each check by its status and puts the fix under the message', () => {
    const text = formatChecks([
      { id: 'source.wal_level', status: 'pass', message: 'wal_level is logical' },
      { id: 'target.version', status: 'fail', message: 'PostgreSQL 12 is too old', remediation: 'Upgrade the target' },
      { id: 'source.size', status: 'warn', message: 'large' },
      { id: 'cdc.slots', status: 'skip', message: 'not a CDC mode' },
    ]);
    expect(text.split('\n')).toEqual([
      `  ✓ ${'source.wal_level'.padEnd(30)} wal_level is logical`,
      `  ✗ ${'target.version'.padEnd(30)} PostgreSQL 12 is too old`,
      `    ${' '.repeat(30)} Fix: Upgrade the target`,
      `  ! ${'source.size'.padEnd(30)} large`,
      `  - ${'cdc.slots'.padEnd(30)} not a CDC mode`,
    ]);
  });
});

describe('formatReplicationLine', () => {
  it('says what CDC waits for before it streams', () => {
    expect(formatReplicationLine(replication({ streamingSince: null, applyRequested: false }))).toBe('CDC: slot created, waiting for the full load');
    expect(formatReplicationLine(replication({ streamingSince: null, applyRequested: true }))).toBe('CDC: starting the stream');
  });

  it('shows lag, rate and what was applied, with thousands separators', () => {
    expect(formatReplicationLine(replication())).toBe(
      'CDC: lag 0.4 s / 2.0 kB · 1,500 rows/s · 56,789 rows in 1,234 transactions applied (at 0/2000000)',
    );
  });

  it('reads unknown lag and rate as zero and an unknown LSN as a dash', () => {
    expect(formatReplicationLine(replication({ lagSeconds: null, lagBytes: null, rowsPerSecond: null, appliedLsn: null }))).toBe(
      'CDC: lag 0.0 s / 0 B · 0 rows/s · 56,789 rows in 1,234 transactions applied (at -)',
    );
  });

  it('ends with the cutover: requested, draining, drained', () => {
    expect(formatReplicationLine(replication({ cutoverRequested: true }))).toMatch(/ · cutover requested$/);
    expect(formatReplicationLine(replication({ cutoverRequested: true, drainLsn: '0/3000000' }))).toMatch(/ · draining to 0\/3000000$/);
    expect(formatReplicationLine(replication({ cutoverRequested: true, drainLsn: '0/3000000', drained: true }))).toMatch(/ · drained$/);
  });

  it('says how long applications have not been able to write, and for how long they could not once the target is ready', () => {
    const cutover = { cutoverRequested: true, drainLsn: '0/3000000', drained: true, writeUnavailableSeconds: 1.26 };
    expect(formatReplicationLine(replication(cutover))).toMatch(/ · drained · writes unavailable for 1\.3 s so far$/);
    expect(formatReplicationLine(replication({ ...cutover, targetReady: true }))).toMatch(/ · drained · writes unavailable for 1\.3 s$/);
  });
});

describe('a silent streamer (issue 12, D8)', () => {
  it('is not shown with its last lag as if current: the line says how long it has been silent', () => {
    const line = formatReplicationLine(replication({ heartbeatAgeSeconds: 42.4, lagSeconds: 0.4 }));
    expect(line).toMatch(/^CDC: no heartbeat from the streamer for 42 s \(the source or the target may be unreachable; it retries\)/);
    expect(line).toContain('at its last heartbeat: lag 0.4 s');
    expect(line).not.toMatch(/^CDC: lag/);
  });

  it('is only a silent streamer while the migration runs and has not drained', () => {
    expect(formatReplicationLine(replication({ heartbeatAgeSeconds: 42 }), { ended: true })).toMatch(/^CDC: lag 0.4 s/);
    expect(formatReplicationLine(replication({ heartbeatAgeSeconds: 42, cutoverRequested: true, drainLsn: '0/3000000', drained: true }))).toMatch(/^CDC: lag/);
    expect(formatReplicationLine(replication({ heartbeatAgeSeconds: 9 }))).toMatch(/^CDC: lag/);
  });
});

describe('formatStatus', () => {
  it('shows only the phase of a migration that has done nothing yet', () => {
    expect(formatStatus({ name: 'shop', phase: 'schema', error: null, tables: [] })).toBe('Migration shop: schema');
  });

  it('names the cause of a pause and the commands that continue or abandon the run', () => {
    expect(formatStatus({ name: 'shop', phase: 'paused', error: 'pgferry.ReplicationFailed: a conflict on public.t id=4', tables: [] }).split('\n')).toEqual([
      'Migration shop: paused',
      '  paused by: pgferry.ReplicationFailed: a conflict on public.t id=4',
      '  its replication slot and the data moved are kept: put the cause right, then pgferry resume SPEC; or abandon with pgferry stop SPEC --drop',
    ]);
    expect(describeCleanup('shop', { cleaned: true, paused: true, unfenced: true }, 'SPEC')).toBe(
      'Migration shop is paused; lifted the write fence on the source. Its replication slot, publication and target data are kept: ' +
        'continue it with pgferry resume SPEC, or abandon it with pgferry stop SPEC --drop.',
    );
  });

  it('shows the last error, the load per table, the comparison and the replication', () => {
    const status: MigrationStatus = {
      name: 'shop',
      phase: 'replicate',
      error: 'a retried failure',
      tables: [
        { table: 'public.orders', unitsDone: 4, units: 4, rows: 1234567, bytes: 10 * 1024 * 1024 },
        { table: 'public.items', unitsDone: 1, units: 2, rows: 10, bytes: 512 },
      ],
      comparison: { tables: 2, matching: 1, differing: ['public.items'] },
      replication: replication({ restarts: 2, lastError: 'connection reset' }),
    };
    expect(formatStatus(status).split('\n')).toEqual([
      'Migration shop: replicate',
      '  last error: a retried failure',
      '  full load: 1/2 tables copied',
      `    ✓ ${'public.orders'.padEnd(40)} ${'1,234,567'.padStart(12)} rows ${'10.0 MB'.padStart(10)}`,
      `    … ${'public.items'.padEnd(40)} ${'10'.padStart(12)} rows ${'512 B'.padStart(10)}`,
      '  comparison: 1 of 2 tables match; differing: public.items (compared while replicating)',
      '  CDC: lag 0.4 s / 2.0 kB · 1,500 rows/s · 56,789 rows in 1,234 transactions applied (at 0/2000000)',
      '  slot pgferry_shop, publication pgferry_shop; heartbeat 1.3 s ago; restarts 2',
      '  CDC error: connection reset',
    ]);
  });

  it('says nothing of the replication phase for a comparison after it, and shows a missing heartbeat as a dash', () => {
    const text = formatStatus({
      name: 'shop',
      phase: 'done',
      error: null,
      tables: [],
      comparison: { tables: 3, matching: 3, differing: [] },
      replication: replication({ heartbeatAgeSeconds: null }),
    });
    expect(text).toContain('  comparison: 3 of 3 tables match\n');
    expect(text).toContain('; heartbeat -; restarts 0');
  });
});

describe('bar and progressLines', () => {
  it('fills a bar in proportion, clamped to empty and full', () => {
    expect(bar(0, 4)).toBe('[░░░░]');
    expect(bar(0.5, 4)).toBe('[██░░]');
    expect(bar(1, 4)).toBe('[████]');
    expect(bar(-1, 4)).toBe('[░░░░]');
    expect(bar(7, 4)).toBe('[████]');
    expect(bar(0.5)).toHaveLength(26);
  });

  it('shows nothing before there are tables', () => {
    expect(progressLines([])).toEqual([]);
  });

  it('shows an overall bar, then one bar per table being copied', () => {
    const rows: TableLoadProgress[] = [
      { table: 'public.orders', estimated: 3072, copied: 1024, done: 1, units: 3, running: true },
      { table: 'public.items', estimated: 1024, copied: 1024, done: 1, units: 1, running: false },
      { table: 'public.users', estimated: 0, copied: 0, done: 0, units: 1, running: false },
    ];
    expect(progressLines(rows)).toEqual([`${bar(2048 / 4096)} 2.0 kB / ~4.0 kB · 1/3 tables`, `    ${bar(1024 / 3072, 16)} public.orders 1.0 kB`]);
  });

  it('counts a table that copied more than estimated at its copied size, and goes by tables done without estimates', () => {
    expect(progressLines([{ table: 'a.b', estimated: 1024, copied: 2048, done: 1, units: 1, running: false }])[0]).toBe(`${bar(1)} 2.0 kB / ~2.0 kB · 1/1 tables`);
    const unestimated = progressLines([
      { table: 'a.b', estimated: 0, copied: 0, done: 1, units: 1, running: false },
      { table: 'a.c', estimated: 0, copied: 0, done: 0, units: 1, running: true },
    ]);
    expect(unestimated).toEqual([`${bar(0.5)} 0 B / ~0 B · 1/2 tables`, `    ${bar(0, 16)} a.c 0 B`]);
  });

  it('shows at most eight tables being copied', () => {
    const rows = Array.from({ length: 12 }, (_, i): TableLoadProgress => ({ table: `t${i}`, estimated: 100, copied: 10, done: 0, units: 2, running: true }));
    expect(progressLines(rows)).toHaveLength(1 + 8);
  });
});

describe('formatReport', () => {
  const report: MigrationReport = {
    migration: 'shop',
    execution: 'local:run-1',
    mode: 'full+cdc',
    phase: 'done',
    checklist: [],
    error: null,
    startedAt: '2026-12-01T02:00:00.000Z',
    finishedAt: '2026-12-01T02:01:00.000Z',
    seconds: 60,
    objects: [
      { kind: 'table', counts: { created: 2 } },
      { kind: 'trigger', counts: { not_migrated: 1 } },
      { kind: 'view', counts: { skipped: 1 } },
    ],
    notMigrated: [{ kind: 'trigger', identity: 'public.audit', detail: 'event triggers are not migrated' }],
    skipped: [{ kind: 'view', identity: 'public.v', detail: 'depends on table public.gone, which is not migrated' }],
    tables: [
      { table: 'public.orders', target: 'public.orders', rows: 1000, bytes: 2 * 1024 * 1024, seconds: 1.5, mbPerSecond: 1.3, units: 2, compare: 'match', differences: 0 },
      { table: 'public.items', target: 'public.items', rows: 5, bytes: 100, seconds: 0.25, mbPerSecond: 0, units: 1, compare: 'mismatch', differences: 3 },
    ],
    totals: { tables: 2, rows: 1005, bytes: 2 * 1024 * 1024 + 100, loadSeconds: 1.5, mbPerSecond: 1.3 },
  };

  it('shows the objects per kind and status, what was not migrated or skipped and why, and the tables with their totals', () => {
    expect(formatReport(report).split('\n')).toEqual([
      'Migration shop (full+cdc): done',
      '',
      'object kind  created  skipped  not migrated',
      '───────────  ───────  ───────  ────────────',
      'table              2        0             0',
      'trigger            0        0             1',
      'view               0        1             0',
      '',
      'Not migrated:',
      '  trigger public.audit: event triggers are not migrated',
      '',
      'Skipped:',
      '  view public.v: depends on table public.gone, which is not migrated',
      '',
      'table          rows   bytes    time  MB/s  compare',
      '─────────────  ────  ──────  ──────  ────  ────────────',
      'public.orders  1000  2.0 MB  1.50 s   1.3  match',
      'public.items      5   100 B  0.25 s   0.0  MISMATCH (3)',
      '',
      '2 tables, 1005 rows, 2.0 MB loaded in 1.50 s (1.3 MB/s); whole run 60.0 s.',
    ]);
  });

  it('names the first 50 skipped objects and says how many more the JSON report lists', () => {
    const skipped = Array.from({ length: 52 }, (_, i) => ({ kind: 'table', identity: `public.t${i}`, detail: 'not selected by objects' }));
    const lines = formatReport({ ...report, notMigrated: [], skipped }).split('\n');
    const first = lines.indexOf('Skipped:');
    expect(lines.slice(first + 1, first + 2)).toEqual(['  table public.t0: not selected by objects']);
    expect(lines[first + 51]).toBe('  … and 2 more (--report FILE lists every one)');
  });

  it("shows the first line of the error, and what CDC applied and how cutover drained", () => {
    const text = formatReport({
      ...report,
      phase: 'failed',
      error: 'pgferry.CompareMismatch: 1 table differs\nmore detail',
      notMigrated: [],
      skipped: [],
      replication: {
        slot: 'pgferry_shop',
        consistentLsn: '0/1',
        appliedLsn: '0/2',
        transactions: 7,
        rows: 70,
        restarts: 1,
        fenced: true,
        drainSeconds: 0.5,
        writeUnavailableSeconds: 2.25,
      },
    });
    expect(text.split('\n')[0]).toBe('Migration shop (full+cdc): failed — pgferry.CompareMismatch: 1 table differs');
    expect(text).not.toContain('Not migrated:');
    expect(text.split('\n').at(-1)).toBe(
      'CDC: 70 rows in 7 transactions applied from slot pgferry_shop (0/1 → 0/2), 1 streamer restart(s); cutover drained in 0.5 s behind a write fence (the source stays fenced); writes were unavailable for 2.3 s (fence → target ready).',
    );
  });

  it('leaves out the cutover of a CDC run that has not cut over', () => {
    const text = formatReport({
      ...report,
      replication: { slot: 's', consistentLsn: null, appliedLsn: null, transactions: 0, rows: 0, restarts: 0, fenced: false, drainSeconds: null, writeUnavailableSeconds: null },
    });
    expect(text.split('\n').at(-1)).toBe('CDC: 0 rows in 0 transactions applied from slot s (- → -).');
  });
});

describe('how a run ended', () => {
  it('describes a local run by its status', () => {
    expect(describeRunResult({ status: 'SUCCEEDED' })).toBe('Migration succeeded.\n');
    expect(describeRunResult({ status: 'FAILED', error: 'pgferry.Failed', cause: 'it broke' })).toBe('Migration failed (pgferry.Failed):\nit broke\n');
    expect(describeRunResult({ status: 'ABORTED' })).toBe('Migration stopped.\n');
    expect(describeRunResult({ status: 'TIMED_OUT' })).toBe('Migration timed out.\n');
  });

  it('exits 0 on success, 2 for an invalid spec, 1 for any other end', () => {
    expect(exitCodeOf({ status: 'SUCCEEDED' })).toBe(EXIT_OK);
    expect(exitCodeOf({ status: 'FAILED', error: 'SpecInvalid', cause: '' })).toBe(EXIT_USAGE);
    expect(exitCodeOf({ status: 'FAILED', error: 'pgferry.Failed', cause: '' })).toBe(EXIT_FAILED);
    expect(exitCodeOf({ status: 'ABORTED' })).toBe(EXIT_FAILED);
    expect(exitCodeOf({ status: 'TIMED_OUT' })).toBe(EXIT_FAILED);
    expect([EXIT_OK, EXIT_FAILED, EXIT_USAGE]).toEqual([0, 1, 2]);
  });

  it('words what a cleanup did', () => {
    expect(cleanupDone({ cleaned: true, paused: false })).toEqual([]);
    expect(cleanupDone({ cleaned: true, paused: false, slotDropped: true, publicationDropped: true, unfenced: true })).toEqual([
      'dropped the replication slot',
      'dropped the publication',
      'lifted the write fence on the source',
    ]);
    expect(cleanupDone({ cleaned: false, paused: false, publicationDropped: true })).toEqual(['dropped the publication']);
  });
});

describe('formatRun', () => {
  const run: RunDescription = {
    executionArn: 'arn:aws:states:eu-west-1:123456789012:execution:pgferry:shop-20261201T020000Z',
    executionName: 'shop-20261201T020000Z',
    stateMachineArn: 'arn:aws:states:eu-west-1:123456789012:stateMachine:pgferry',
    status: 'RUNNING',
    startDate: new Date('2026-12-01T02:00:00.123Z'),
    lastState: 'FullLoad › CopyWorker',
    migrationName: 'shop',
    progress: { available: true, status: null },
  };

  it('shows a running execution, its state and a migration that has not started yet', () => {
    expect(formatRun(run)).toBe(
      'Execution shop-20261201T020000Z: RUNNING (in FullLoad › CopyWorker)\n' +
        '  started 2026-12-01T02:00:00Z\n' +
        'Migration shop has not started on its target yet (no state in its control schema).\n',
    );
  });

  it("shows an ended execution's dates, error and a cause over several lines, then the migration's status", () => {
    const status: MigrationStatus = { name: 'shop', phase: 'failed', error: 'boom', tables: [] };
    const text = formatRun({
      ...run,
      status: 'FAILED',
      stopDate: new Date('2026-12-01T02:05:00Z'),
      lastState: 'Cleanup',
      error: 'pgferry.Failed',
      cause: 'first line\nsecond line',
      progress: { available: true, status },
    });
    expect(text).toBe(
      'Execution shop-20261201T020000Z: FAILED (last state Cleanup)\n' +
        '  started 2026-12-01T02:00:00Z, stopped 2026-12-01T02:05:00Z\n' +
        '  error: pgferry.Failed\n' +
        '  cause: first line\n' +
        '         second line\n' +
        `${formatStatus(status)}\n`,
    );
  });

  it('says why progress is unavailable, and names no migration when the input has none', () => {
    expect(formatRun({ ...run, lastState: undefined, startDate: undefined, progress: { available: false, reason: 'access denied' } })).toBe(
      'Execution shop-20261201T020000Z: RUNNING\nProgress unavailable: access denied\n',
    );
    expect(formatRun({ ...run, migrationName: undefined })).toContain('Migration (unnamed) has not started');
  });
});

/** What the workflow's CDC loop does next (engine/steps/replication-status.ts), from the spec and the status row alone. */
import { describe, expect, it } from 'vitest';
import type { ReplicationStatusRow } from '../../engine/control/index.js';
import { parseSpec } from '../../engine/spec/index.js';
import { replicationDecision } from '../../engine/steps/replication-status.js';
import { replicationStatusRow } from '../support/replication-status.js';

const specWith = (overrides: { cutover?: object; compare?: object; cdc?: object } = {}) =>
  parseSpec(
    { name: 'orders-move', mode: 'full+cdc', source: { secret: 'env:SOURCE_DB' }, target: { secret: 'env:TARGET_DB' }, ...overrides }
  );

/** Defaults: retry window 120 min, heartbeat timeout 60 s, cutover manual at ≤ 5 s lag, compare enabled. */
const spec = specWith();

/** A streamer that beats, streams and has caught up (lag 1 s), live comparison done, no cutover asked. */
const status = (overrides: Partial<ReplicationStatusRow> = {}): ReplicationStatusRow =>
  replicationStatusRow({
    slotName: 'pgferry_orders_move',
    publicationName: 'pgferry_orders_move',
    appliedAt: new Date('2026-12-01T10:00:00Z'),
    liveCompared: true,
    ...overrides,
  });

const actionOf = (row: ReplicationStatusRow, s = spec) => replicationDecision(s, row).action;

describe('the CDC loop decision', () => {
  it('finishes once drained, even with a stale heartbeat', () => {
    expect(actionOf(status({ drained: true, heartbeatAgeSeconds: 3600 }))).toBe('drained');
  });

  it('fails when the streamer has been silent longer than the retry window', () => {
    expect(() => replicationDecision(spec, status({ unhealthySeconds: 120 * 60 + 1, heartbeatAgeSeconds: 7201 }))).toThrow(
      'The CDC streamer has not reported for 120 minute(s), longer than cdc.retryWindowMinutes (120); see its log for the reason.',
    );
    expect(actionOf(status({ unhealthySeconds: 120 * 60, heartbeatAgeSeconds: 7200 }))).toBe('restart');
  });

  it('restarts a streamer whose heartbeat is overdue, or that has never beaten', () => {
    expect(actionOf(status({ heartbeatAgeSeconds: 61 }))).toBe('restart');
    expect(actionOf(status({ heartbeatAgeSeconds: null }))).toBe('restart');
    expect(actionOf(status({ heartbeatAgeSeconds: 60 }))).toBe('wait');
  });

  it('waits while cutover drains, however small the lag', () => {
    expect(actionOf(status({ drainLsn: '0/3000000', cutoverRequested: true }), specWith({ cutover: { mode: 'auto' } }))).toBe('wait');
  });

  it('compares once caught up, if the spec compares and the live comparison has not run', () => {
    expect(actionOf(status({ liveCompared: false }))).toBe('compare');
    expect(actionOf(status({ liveCompared: false }), specWith({ compare: { enabled: false } }))).toBe('wait');
    expect(actionOf(status({ liveCompared: false, lagSeconds: 6 }))).toBe('wait');
  });

  it('compares the changes once more when cutover is due, before cutting over, once per request', () => {
    const changed = { changesSinceLiveCompare: true };
    expect(actionOf(status({ ...changed, cutoverRequested: true }))).toBe('compare');
    expect(actionOf(status(changed), specWith({ cutover: { mode: 'auto' } }))).toBe('compare');
    // Done for this request, nothing recorded, no request yet, or still lagging: no second look.
    expect(actionOf(status({ ...changed, cutoverRequested: true, incrementalCompared: true }))).toBe('cutover');
    expect(actionOf(status({ cutoverRequested: true }))).toBe('cutover');
    expect(actionOf(status(changed))).toBe('wait');
    expect(actionOf(status({ ...changed, cutoverRequested: true, lagSeconds: 6 }))).toBe('wait');
    // Without the final comparison, or without comparison at all, the changes are not looked at.
    expect(actionOf(status({ ...changed, cutoverRequested: true }), specWith({ cutover: { finalCompare: false } }))).toBe('cutover');
    expect(actionOf(status({ ...changed, cutoverRequested: true }), specWith({ compare: { enabled: false } }))).toBe('cutover');
    // The first comparison while replicating comes first.
    expect(actionOf(status({ ...changed, cutoverRequested: true, liveCompared: false }))).toBe('compare');
  });

  it('after the passes at the cutover request, fences with the lag they left behind rather than wait for it under load', () => {
    const passed = { cutoverRequested: true, changesSinceLiveCompare: true, incrementalCompared: true, incrementalCompareSeconds: 24 };
    expect(actionOf(status({ ...passed, lagSeconds: 28 }))).toBe('cutover');
    // More than the passes could have caused (maxLagSeconds 5 + 24 s): the applier is behind for another reason.
    expect(actionOf(status({ ...passed, lagSeconds: 30 }))).toBe('wait');
    // Before the passes, the lag must be under maxLagSeconds.
    expect(actionOf(status({ ...passed, incrementalCompared: false, lagSeconds: 6 }))).toBe('wait');
  });

  it('cuts over once caught up: automatically, or when a person asked', () => {
    expect(actionOf(status(), specWith({ cutover: { mode: 'auto' } }))).toBe('cutover');
    expect(actionOf(status({ cutoverRequested: true }))).toBe('cutover');
    expect(actionOf(status())).toBe('wait');
  });

  it('waits while not caught up: lag above cutover.maxLagSeconds, lag unknown, or not streaming yet', () => {
    const auto = specWith({ cutover: { mode: 'auto' } });
    expect(actionOf(status({ lagSeconds: 5.5 }), auto)).toBe('wait');
    expect(actionOf(status({ lagSeconds: 5 }), auto)).toBe('cutover');
    expect(actionOf(status({ lagSeconds: null }), auto)).toBe('wait');
    expect(actionOf(status({ streamingSince: null }), auto)).toBe('wait');
  });

  it('fails with the error the streamer recorded, before anything else', () => {
    expect(() => replicationDecision(spec, status({ lastError: 'relation "orders" does not exist', drained: true }))).toThrow(
      'Change data capture stopped: relation "orders" does not exist',
    );
  });

  it('fails when no replication is registered', () => {
    expect(() => replicationDecision(spec, undefined)).toThrow("Migration orders-move has no replication registered in the target's control schema.");
  });

  it('names the error for the workflow and reports the figures with the action', () => {
    let thrown: unknown;
    try {
      replicationDecision(spec, status({ lastError: 'boom' }));
    } catch (error) {
      thrown = error;
    }
    expect((thrown as Error).name).toBe('pgferry.ReplicationFailed');
    expect(replicationDecision(spec, status({ cutoverRequested: true, restarts: 2 }))).toEqual({
      action: 'cutover',
      lagSeconds: 1,
      lagBytes: 0,
      heartbeatAgeSeconds: 1,
      appliedLsn: '0/2000000',
      rowsApplied: 1000,
      restarts: 2,
      cutoverRequested: true,
      draining: false,
    });
  });
});

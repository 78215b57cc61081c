/** The replicator's pure decisions: lag, what the workflow's request means, and the stream position. */
import type pg from 'pg';
import { describe, expect, it, vi } from 'vitest';
import { Heartbeat, measureLag, streamerDecision } from '../../engine/cdc/heartbeat.js';
import { parseLsn } from '../../engine/cdc/pgoutput.js';
import { StreamPosition } from '../../engine/cdc/position.js';
import { PG_EPOCH_OFFSET_US } from '../../engine/cdc/stream.js';

describe('measureLag', () => {
  it('counts unprocessed WAL bytes and the age of the oldest commit not yet on the target', () => {
    expect(measureLag({ sourceLsn: 1000n, processed: 400n, oldestPendingCommit: 10_000, now: 12_500 })).toEqual({ lagBytes: 600n, lagSeconds: 2.5 });
  });

  it('is zero when nothing waits, and never negative', () => {
    expect(measureLag({ sourceLsn: 400n, processed: 500n, oldestPendingCommit: undefined, now: 1 })).toEqual({ lagBytes: 0n, lagSeconds: 0 });
    expect(measureLag({ sourceLsn: 0n, processed: 0n, oldestPendingCommit: 2_000, now: 1_000 }).lagSeconds).toBe(0);
  });
});

describe('streamerDecision', () => {
  const processed = parseLsn('0/500');
  it('stops when the migration is gone, failed or done', () => {
    expect(streamerDecision(undefined, processed)).toBe('stopped');
    expect(streamerDecision({ drainLsn: null, phase: 'failed' }, processed)).toBe('stopped');
    expect(streamerDecision({ drainLsn: '0/100', phase: 'done' }, processed)).toBe('stopped');
  });

  it('is drained once everything up to the drain LSN is processed, and asks for a keepalive before', () => {
    expect(streamerDecision({ drainLsn: '0/500', phase: 'cutover' }, processed)).toBe('drained');
    expect(streamerDecision({ drainLsn: '0/501', phase: 'cutover' }, processed)).toBe('keepalive');
  });

  it('goes on while nothing is requested', () => {
    expect(streamerDecision({ drainLsn: null, phase: 'replicate' }, processed)).toBeUndefined();
    expect(streamerDecision({ drainLsn: null, phase: null }, processed)).toBeUndefined();
  });
});

describe('StreamPosition', () => {
  it('acknowledges only forward, and only what is processed', async () => {
    const acknowledged: string[] = [];
    const position = new StreamPosition('0/100', async (lsn) => void acknowledged.push(lsn));
    await position.markApplied(undefined);
    await position.markProcessed(parseLsn('0/80'));
    await position.markApplied('0/200');
    await position.markProcessed(parseLsn('0/300'));
    await position.markApplied('0/250');
    expect(acknowledged).toEqual(['0/200', '0/300']);
    expect(position.applied).toBe(parseLsn('0/250'));
    expect(position.processed).toBe(parseLsn('0/300'));
  });

  it('remembers the oldest commit received until the main session flushes', () => {
    const position = new StreamPosition('0/0', async () => undefined);
    position.noteCommit('0/10', 1_000_000n);
    position.noteCommit('0/20', 5_000_000n);
    expect(position.received).toBe(parseLsn('0/20'));
    expect(position.oldestPendingCommit).toBe(1_000 + Number(PG_EPOCH_OFFSET_US / 1000n));
    position.noteFlushed();
    expect(position.oldestPendingCommit).toBeUndefined();
  });
});

describe('Heartbeat: the retained WAL', () => {
  it('is measured on the first beat, then at most every interval, not on every beat', async () => {
    let now = 1_000_000;
    const clock = vi.spyOn(Date, 'now').mockImplementation(() => now);
    try {
      // Sessions that answer the heartbeat's two statements: the WAL position, and the written row.
      const answering = (row: Record<string, unknown>) => ({ query: async () => ({ rows: [row] }) }) as unknown as pg.Client;
      let checks = 0;
      const heartbeat = new Heartbeat({
        migration: 'shop',
        control: answering({ drain_lsn: null, phase: 'replicate' }),
        source: answering({ lsn: '0/3000000' }),
        position: new StreamPosition('0/3000000', async () => undefined),
        mainRows: () => 0,
        allRows: () => 0,
        requestKeepalive: () => undefined,
        healthy: () => undefined,
        log: () => undefined,
        checkRetainedWal: async () => void checks++,
        retainedWalIntervalMs: 30_000,
      });
      for (let beat = 0; beat < 30; beat++, now += 1000) await heartbeat.beat();
      expect(checks).toBe(1);
      await heartbeat.beat(); // 30 s after the first
      expect(checks).toBe(2);
    } finally {
      clock.mockRestore();
    }
  });
});

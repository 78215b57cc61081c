/**
 * Flow control's arithmetic (engine/flow/rate-limiter.ts) with an injected clock, each worker's
 * share among the workers running, the limit in force after pgferry throttle, the throttle
 * command's options, and the status line (issue 15, item 3).
 */
import { describe, expect, it } from 'vitest';
import { limitInForce, Pace, RateLimiter, sharedLimits, workerShare } from '../../engine/flow/rate-limiter.js';
import { describeLimits, throttleChangeSchema } from '../../engine/flow/throttle.js';
import { parseThrottleOptions } from '../../bin/commands/throttle.js';
import { flowLine } from '../../bin/format.js';
import { UsageError } from '../../bin/exit-codes.js';

/** A clock the test moves. */
function clock(start = 0) {
  let now = start;
  return { now: () => now, advance: (ms: number) => void (now += ms), set: (ms: number) => void (now = ms) };
}

describe('the rate limiter', () => {
  it('holds a worker to its rate: moving 1,000 rows at 100 rows/s, sleeping each wait, takes 10 s', () => {
    const time = clock();
    const limiter = new RateLimiter(time.now);
    const waits: number[] = [];
    for (let i = 0; i < 100; i++) {
      const wait = limiter.take(10, 100);
      waits.push(wait);
      time.advance(wait);
    }
    expect(waits.every((wait) => wait === 100)).toBe(true);
    expect(time.now()).toBe(10_000);
  });

  it('gives back at most 100 ms of idle time, so the rate over a few seconds stays at the limit', () => {
    const time = clock();
    const limiter = new RateLimiter(time.now);
    expect(limiter.take(10, 100)).toBe(100);
    time.set(5_000);
    // 5 s idle: only 100 ms (10 rows at 100/s) may go at once; 50 rows are due 400 ms later.
    expect(limiter.take(50, 100)).toBe(400);
  });

  it('waits nothing without a limit, and starts afresh when a limit is set later', () => {
    const time = clock();
    const limiter = new RateLimiter(time.now);
    expect(limiter.take(1_000_000, undefined)).toBe(0);
    expect(limiter.take(1_000_000, 0)).toBe(0);
    expect(limiter.pending(undefined)).toBe(0);
    time.advance(1_000);
    expect(limiter.take(200, 1000)).toBe(200);
  });

  it('rescales what is still due when the limit changes during a wait (pgferry throttle)', () => {
    const time = clock();
    const limiter = new RateLimiter(time.now);
    expect(limiter.take(1_000, 100)).toBe(10_000);
    time.advance(2_000);
    // 8 s of rows left at 100/s are 0.8 s at 1,000/s.
    expect(limiter.pending(1_000)).toBe(800);
    // Lowered again: 0.8 s at 1,000/s are 16 s at 50/s.
    expect(limiter.pending(50)).toBe(16_000);
    // Lifted: nothing is due.
    expect(limiter.pending(undefined)).toBe(0);
  });

  it('paces rows and bytes together: the wait is the longer of the two', () => {
    const time = clock();
    const pace = new Pace(time.now);
    expect(pace.take(10, 1_000_000, { rowsPerSecond: 100, bytesPerSecond: 10_000_000 })).toBe(100);
    expect(pace.pending({})).toBe(0);
    expect(new Pace(time.now).take(1, 1_000_000, { rowsPerSecond: 100, bytesPerSecond: 1_000_000 })).toBe(1_000);
  });
});

describe('the share of each worker', () => {
  it('divides a limit by the workers running, at least one', () => {
    expect(workerShare(1000, 2)).toBe(500);
    expect(workerShare(1000, 3)).toBeCloseTo(333.33, 2);
    expect(workerShare(1000, 1)).toBe(1000);
    expect(workerShare(1000, 0)).toBe(1000);
    expect(workerShare(undefined, 4)).toBeUndefined();
    expect(sharedLimits({ rowsPerSecond: 800, bytesPerSecond: 4096 }, 4)).toEqual({ rowsPerSecond: 200, bytesPerSecond: 1024 });
  });

  it('keeps two workers sharing 1,000 rows/s at 1,000 rows/s together', () => {
    const time = clock();
    const workers = [new RateLimiter(time.now), new RateLimiter(time.now)];
    const share = workerShare(1000, workers.length);
    // Each moves 5,000 rows in chunks of 50; they run side by side, so the slower one sets the end.
    const ends = workers.map((limiter) => {
      let at = 0;
      for (let i = 0; i < 100; i++) {
        time.set(at);
        at += limiter.take(50, share);
      }
      return at;
    });
    expect(Math.max(...ends)).toBe(10_000);
  });

  it('takes the limit pgferry throttle set over the spec: null keeps the spec, 0 lifts it', () => {
    expect(limitInForce(1000, null)).toBe(1000);
    expect(limitInForce(1000, undefined)).toBe(1000);
    expect(limitInForce(1000, 0)).toBeUndefined();
    expect(limitInForce(1000, 2500)).toBe(2500);
    expect(limitInForce(undefined, 500)).toBe(500);
    expect(limitInForce(undefined, null)).toBeUndefined();
  });
});

describe('pgferry throttle options', () => {
  it('read rows, bytes (a number or a size) and the phase', () => {
    expect(parseThrottleOptions({ rows: '5000' })).toEqual({ phases: ['load', 'cdc'], rowsPerSecond: 5000 });
    expect(parseThrottleOptions({ bytes: '10MB', phase: 'cdc' })).toEqual({ phases: ['cdc'], bytesPerSecond: 10 * 1024 ** 2 });
    expect(parseThrottleOptions({ rows: '0', bytes: '0' })).toEqual({ phases: ['load', 'cdc'], rowsPerSecond: 0, bytesPerSecond: 0 });
    expect(parseThrottleOptions({ off: true, phase: 'load' })).toEqual({ phases: ['load'], rowsPerSecond: 0, bytesPerSecond: 0 });
    expect(parseThrottleOptions({ reset: true })).toEqual({ phases: ['load', 'cdc'], rowsPerSecond: null, bytesPerSecond: null });
    expect(parseThrottleOptions({})).toEqual({ phases: ['load', 'cdc'] });
  });

  it.each([
    [{ rows: '-5' }, '--rows must be a whole number of rows per second, 0 to lift the limit; not "-5"'],
    [{ rows: '1.5' }, '--rows must be a whole number'],
    [{ bytes: 'lots' }, '--bytes must be bytes per second, a number or a size like "10MB"'],
    [{ phase: 'copy' }, '--phase must be "load" (the full load) or "cdc", not "copy"'],
    [{ off: true, rows: '5' }, 'takes --off or --reset instead of --rows and --bytes'],
    [{ off: true, reset: true }, 'not both'],
  ])('refuse %j with a usage error naming the option', (options, message) => {
    expect(() => parseThrottleOptions(options)).toThrow(UsageError);
    expect(() => parseThrottleOptions(options)).toThrow(message);
  });

  it('are checked again where the Operator receives them', () => {
    expect(throttleChangeSchema.safeParse({ rowsPerSecond: -1 }).success).toBe(false);
    expect(throttleChangeSchema.safeParse({ bytesPerSecond: 1.5 }).success).toBe(false);
    expect(throttleChangeSchema.safeParse({ phases: [] }).success).toBe(false);
    expect(throttleChangeSchema.parse({ rowsPerSecond: null })).toEqual({ phases: ['load', 'cdc'], rowsPerSecond: null });
  });
});

describe('the status line', () => {
  it('says the limits in force per phase, who set them, and each running worker\'s share', () => {
    expect(describeLimits({})).toBe('no limit');
    const line = flowLine({
      load: { limits: { rowsPerSecond: 1000, bytesPerSecond: 10 * 1024 ** 2 }, throttled: true, workers: 2, share: { rowsPerSecond: 500, bytesPerSecond: 5 * 1024 ** 2 } },
      cdc: { limits: { rowsPerSecond: 200 }, throttled: false, workers: 0, share: { rowsPerSecond: 200 } },
      changedAt: new Date(),
    });
    expect(line).toBe(
      'flow control: full load 1,000 rows/s, 10.0 MB/s (set by pgferry throttle); CDC 200 rows/s · 2 copy worker(s) at 500 rows/s, 5.0 MB/s each',
    );
  });
});

/** How many copy workers run, and each one's share of fullLoad.maxBytesPerSecond (engine/steps/). */
import { describe, expect, it } from 'vitest';
import { workerRateShare } from '../../engine/steps/copy-worker.js';
import { copyWorkerCount } from '../../engine/steps/plan-full-load.js';

describe('copy workers', () => {
  it('run fullLoad.parallelism at once, but no more than there are units, and at least one', () => {
    expect(copyWorkerCount(4, 10)).toBe(4);
    expect(copyWorkerCount(4, 2)).toBe(2);
    expect(copyWorkerCount(4, 0)).toBe(1);
  });

  it('share the rate limit among the workers that actually run', () => {
    // 4 units, parallelism 8: 4 workers run, each gets a quarter (not an eighth) of 80 MB/s.
    expect(workerRateShare(80_000_000, 8, 4)).toBe(20_000_000);
    expect(workerRateShare(80_000_000, 8, 100)).toBe(10_000_000);
    expect(workerRateShare(80_000_000, 8, 1)).toBe(80_000_000);
    expect(workerRateShare(80_000_000, 8, 0)).toBe(80_000_000);
  });

  it('leave the rate unlimited without fullLoad.maxBytesPerSecond', () => {
    expect(workerRateShare(undefined, 8, 4)).toBeUndefined();
  });
});

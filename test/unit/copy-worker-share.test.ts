/** How many copy workers run (engine/steps/plan-full-load.ts); their share of the load's limits is in flow-control.test.ts. */
import { describe, expect, it } from 'vitest';
import { copyWorkerCount } from '../../engine/steps/plan-full-load.js';

describe('copy workers', () => {
  it('run fullLoad.parallelism at once, but no more than there are units, and at least one', () => {
    expect(copyWorkerCount(4, 10)).toBe(4);
    expect(copyWorkerCount(4, 2)).toBe(2);
    expect(copyWorkerCount(4, 0)).toBe(1);
  });
});

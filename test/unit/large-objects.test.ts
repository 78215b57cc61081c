import { describe, expect, it } from 'vitest';
import { describeResync } from '../../engine/cutover/large-objects.js';
import { LARGE_OBJECTS } from '../../engine/load/large-objects.js';
import { planUnits } from '../../engine/load/planner.js';
import { migrationSpecSchema } from '../../engine/spec/index.js';

const spec = migrationSpecSchema.parse({ name: 'lo-plan', source: { secret: 'env:S' }, target: { secret: 'env:T' } });
const unit = (from: number, to: number | undefined, estimatedBytes: number) => ({
  source: LARGE_OBJECTS,
  target: LARGE_OBJECTS,
  columns: [],
  fromPage: from,
  toPage: to,
  binaryFormat: false,
  freeze: false,
  estimatedBytes,
});

describe('large objects in the plan', () => {
  it('are units beside the tables, biggest first, numbered with them', () => {
    const units = planUnits({
      tables: [],
      target: { columnTypes: new Map(), referenced: new Set() },
      spec,
      sourceVersionNum: 150000,
      largeObjects: [unit(0, 500, 10), unit(500, undefined, 20)],
    });
    expect(units.map((u) => [u.id, u.fromPage, u.toPage])).toEqual([
      [1, 500, undefined],
      [2, 0, 500],
    ]);
  });
});

describe('the resync at cutover', () => {
  it('names what it created, copied again and unlinked, a few OIDs each', () => {
    const many = Array.from({ length: 25 }, (_, i) => String(100 + i));
    expect(describeResync({ created: ['7'], changed: many, unlinked: [], bytes: 42 })).toBe(
      `large objects resynced at cutover: 1 created (7), 25 copied again (${many.slice(0, 20).join(', ')}, … 5 more); 42 bytes copied`,
    );
    expect(describeResync({ created: [], changed: [], unlinked: [], bytes: 0 })).toBe('large objects at cutover: all equal the source');
  });
});

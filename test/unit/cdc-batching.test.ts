/**
 * The slot is never acknowledged past a failed apply: a keepalive that arrives while (or after)
 * a batch fails would find the applier empty, since its batch was rolled back, and would let the
 * slot forget transactions that never reached the target (found by the fault drill).
 */
import { describe, expect, it } from 'vitest';
import type { Applier } from '../../engine/cdc/apply/index.js';
import { Batcher } from '../../engine/cdc/batching.js';
import { StreamPosition } from '../../engine/cdc/position.js';
import { parseLsn } from '../../engine/cdc/pgoutput.js';

/** An applier whose batch was rolled back: between transactions, nothing pending. */
const emptiedApplier = { atBoundary: true, pendingTransactions: 0 } as unknown as Applier;

const settle = () => new Promise((resolve) => setTimeout(resolve, 20));

describe('Batcher and StreamPosition after a failed apply', () => {
  it('acknowledges a keepalive while the applier is idle', async () => {
    const acknowledged: string[] = [];
    const position = new StreamPosition('0/1000', async (lsn) => void acknowledged.push(lsn));
    const batcher = new Batcher(emptiedApplier, position, 200, () => undefined);
    batcher.noteIdle(parseLsn('0/2000'), () => false);
    await settle();
    expect(acknowledged).toEqual(['0/2000']);
  });

  it('acknowledges nothing once an apply has failed, not even a keepalive queued behind the failure', async () => {
    const acknowledged: string[] = [];
    const failures: Error[] = [];
    const position = new StreamPosition('0/1000', async (lsn) => void acknowledged.push(lsn));
    const batcher = new Batcher(emptiedApplier, position, 200, (error) => failures.push(error));
    const conflict = batcher.exclusive(async () => {
      throw new Error('Conflict applying the source transaction with commit LSN 0/1800');
    });
    batcher.noteIdle(parseLsn('0/2000'), () => false);
    await expect(conflict).rejects.toThrow(/Conflict/);
    await settle();
    batcher.noteIdle(parseLsn('0/3000'), () => false);
    await settle();
    expect(acknowledged).toEqual([]);
    expect(position.processed).toBe(parseLsn('0/1000'));
  });
});

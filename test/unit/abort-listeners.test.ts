/**
 * Waits on a long-lived signal (a task's stop signal) leave no abort listener behind: a
 * streamer that reconnects for days would otherwise pile them up (MaxListenersExceededWarning,
 * then a leak). Issue 12, D8.
 */
import { getEventListeners } from 'node:events';
import { describe, expect, it } from 'vitest';
import { heartbeatLoop } from '../../engine/cdc/heartbeat.js';
import { pollUntil, sleep } from '../../engine/sql.js';

describe('abort listeners on a long-lived signal', () => {
  it('sleep and pollUntil remove theirs when they resolve', async () => {
    const signal = new AbortController().signal;
    for (let n = 0; n < 1000; n++) await sleep(0, signal);
    let polls = 0;
    await pollUntil(async () => (++polls === 5 ? true : undefined), { intervalMs: 0, signal });
    expect(getEventListeners(signal, 'abort')).toHaveLength(0);
  });

  it('a heartbeat loop removes its own once it ended or was stopped, as at every reconnect', async () => {
    const signal = new AbortController().signal;
    for (let n = 0; n < 1000; n++) {
      const loop = heartbeatLoop(async () => (n % 2 === 0 ? 'drained' : undefined), 60_000, signal);
      if (n % 2 === 0) await loop.ended;
      loop.stop();
    }
    expect(getEventListeners(signal, 'abort')).toHaveLength(0);
  });
});

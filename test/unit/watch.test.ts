/**
 * The live line while the target does not answer (issue 12, D8): a poll that hangs on a
 * half-open connection must not leave the last lag on screen as if it were current.
 */
import type pg from 'pg';
import { describe, expect, it } from 'vitest';
import { watchMigration } from '../../bin/watch.js';
import { waitFor } from '../support/wait.js';

/** A session whose queries never answer, until it is ended. */
function hangingClient(): pg.Client {
  const pending: ((error: Error) => void)[] = [];
  return {
    query: () => new Promise((_, reject) => pending.push(reject)),
    end: async () => {
      for (const reject of pending) reject(new Error('Connection terminated'));
    },
  } as unknown as pg.Client;
}

describe('watchMigration', () => {
  it('says that the target does not answer while a poll hangs, and stops all the same', async () => {
    const shown: string[][] = [];
    const progress = { onEvent: () => undefined, note: () => undefined, detail: (lines: string[]) => shown.push(lines), stop: () => undefined };
    const watch = watchMigration(async () => hangingClient(), 'orders', progress, { silentAfterMs: 0 });
    await waitFor('the watch to show the silence', () => shown.some((lines) => /^Target not answering for \d+ s; retrying/.test(lines[0] ?? '')));
    await watch.stop();
    expect(shown.at(-1)).toEqual([]);
  });
});

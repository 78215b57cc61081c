/**
 * Live progress of a running migration, read from the target's control schema: during the
 * full load an overall bar and one bar per table being copied; with CDC a line of lag and rate.
 */
import type pg from 'pg';
import { readProgress } from '../engine/control/index.js';
import { sleep } from '../engine/sql.js';
import { progressDetail } from './format.js';
import type { Progress } from './progress.js';

const POLL_MS = 500;

/** Polls the load's progress and the CDC lag into `progress.detail` until stopped. */
export function watchMigration(connectTarget: () => Promise<pg.Client>, migration: string, progress: Progress): { stop(): Promise<void> } {
  let stopped = false;
  let client: pg.Client | undefined;
  const loop = (async () => {
    try {
      client = await connectTarget();
      while (!stopped) {
        const lines = progressDetail(await readProgress(client, migration).catch(() => undefined));
        if (!stopped) progress.detail(lines);
        await sleep(POLL_MS);
      }
    } catch {
      // Progress is a convenience: a target we cannot poll only means no bars.
    } finally {
      await client?.end().catch(() => undefined);
    }
  })();
  return {
    async stop() {
      stopped = true;
      await loop;
      progress.detail([]);
    },
  };
}

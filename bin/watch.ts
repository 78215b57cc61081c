/**
 * Live progress of a running migration, read from the target's control schema: during the
 * full load an overall bar and one bar per table being copied; with CDC a line of lag and rate.
 * While the target does not answer, the line says so and for how long (issue 12, D8): never the
 * last lag as if it were current.
 */
import type pg from 'pg';
import { readProgress } from '../engine/control/index.js';
import { messageOf, sleep } from '../engine/sql.js';
import { progressDetail } from './format.js';
import type { Progress } from './progress.js';

const POLL_MS = 500;

/** The line shown while the target does not answer the watch. */
export const unreachableLine = (ms: number, error: unknown) =>
  `Target unreachable for ${Math.round(ms / 1000)} s (${messageOf(error)}); retrying — progress shows again once it answers`;

/** Polls the load's progress and the CDC lag into `progress.detail` until stopped; reconnects when the target goes away. */
export function watchMigration(connectTarget: () => Promise<pg.Client>, migration: string, progress: Progress): { stop(): Promise<void> } {
  const stopped = new AbortController();
  let client: pg.Client | undefined;
  let failingSince: number | undefined;
  const loop = (async () => {
    while (!stopped.signal.aborted) {
      try {
        client ??= await connectTarget();
        const lines = progressDetail(await readProgress(client, migration));
        failingSince = undefined;
        if (!stopped.signal.aborted) progress.detail(lines);
      } catch (error) {
        await client?.end().catch(() => undefined);
        client = undefined;
        failingSince ??= Date.now();
        if (!stopped.signal.aborted) progress.detail([unreachableLine(Date.now() - failingSince, error)]);
      }
      await sleep(POLL_MS, stopped.signal);
    }
    await client?.end().catch(() => undefined);
  })();
  return {
    async stop() {
      stopped.abort();
      await loop;
      progress.detail([]);
    },
  };
}

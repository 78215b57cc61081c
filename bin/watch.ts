/**
 * Live progress of a running migration, read from the target's control schema: during the
 * full load an overall bar and one bar per table being copied; with CDC a line of lag and rate.
 * While the target does not answer (an error, or a poll that hangs), the line says so and for
 * how long (issue 12, D8): never the last lag as if it were current.
 */
import type pg from 'pg';
import { readProgress } from '../engine/control/index.js';
import { messageOf, sleep } from '../engine/sql.js';
import { progressDetail } from './format.js';
import type { Progress } from './progress.js';

const POLL_MS = 500;
/** A poll unanswered this long (a half-open connection) is shown as a target that does not answer. */
const SILENT_TARGET_MS = 5_000;

/** The line shown while the target does not answer the watch (`error`: why its last poll failed, if it did). */
export const unreachableLine = (ms: number, error?: unknown) =>
  `Target not answering for ${Math.round(ms / 1000)} s${error === undefined ? '' : ` (${messageOf(error)})`}; retrying — progress shows again once it answers`;

/** Polls the load's progress and the CDC lag into `progress.detail` until stopped; reconnects when the target goes away. */
export function watchMigration(
  connectTarget: () => Promise<pg.Client>,
  migration: string,
  progress: Progress,
  { silentAfterMs = SILENT_TARGET_MS } = {},
): { stop(): Promise<void> } {
  const stopped = new AbortController();
  let client: pg.Client | undefined;
  let answeredAt = Date.now();
  let lastError: unknown;
  const showSilence = () => progress.detail([unreachableLine(Date.now() - answeredAt, lastError)]);
  // A poll that hangs never reaches the catch below: the silence is shown from outside the loop.
  const silence = setInterval(() => !stopped.signal.aborted && Date.now() - answeredAt > silentAfterMs && showSilence(), 1000);
  silence.unref();
  const loop = (async () => {
    while (!stopped.signal.aborted) {
      try {
        client ??= await connectTarget();
        const lines = progressDetail(await readProgress(client, migration));
        answeredAt = Date.now();
        lastError = undefined;
        if (!stopped.signal.aborted) progress.detail(lines);
      } catch (error) {
        await client?.end().catch(() => undefined);
        client = undefined;
        lastError = error;
        if (!stopped.signal.aborted) showSilence();
      }
      await sleep(POLL_MS, stopped.signal);
    }
    await client?.end().catch(() => undefined);
  })();
  return {
    async stop() {
      stopped.abort();
      clearInterval(silence);
      // Ending the session fails a poll that hangs, so the loop ends.
      await client?.end().catch(() => undefined);
      await loop;
      progress.detail([]);
    },
  };
}

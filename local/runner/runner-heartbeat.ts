/**
 * The runner's heartbeat (engine/control/runner.ts): while a local run goes on, its runner
 * writes its process id, host and the time into the run's row every few seconds, so that
 * `pgferry status` and `cutover` tell when it is gone. A target it cannot reach is tried again
 * at the next beat; the heartbeat never stops the run.
 */
import { hostname } from 'node:os';
import type pg from 'pg';
import { recordRunnerHeartbeat, RUNNER_HEARTBEAT_MS } from '../../engine/control/index.js';
import { sleep } from '../../engine/sql.js';

export function beatWhileRunning(connectTarget: () => Promise<pg.Client>, migration: string, execution: string, intervalMs = RUNNER_HEARTBEAT_MS): { stop(): Promise<void> } {
  const stopped = new AbortController();
  const runner = { pid: process.pid, host: hostname() };
  let client: pg.Client | undefined;
  const loop = (async () => {
    while (!stopped.signal.aborted) {
      try {
        client ??= await connectTarget();
        await recordRunnerHeartbeat(client, migration, execution, runner);
      } catch {
        await client?.end().catch(() => undefined);
        client = undefined;
      }
      await sleep(intervalMs, stopped.signal);
    }
    await client?.end().catch(() => undefined);
  })();
  return {
    async stop() {
      stopped.abort();
      await loop;
    },
  };
}

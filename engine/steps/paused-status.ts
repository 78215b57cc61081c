/**
 * PausedStatus: the paused run's loop. It waits while the run is paused, and ends the loop when
 * the run is resumed by another execution (`pgferry resume` starts one, which takes the run
 * over) or abandoned (`pgferry stop --drop`).
 */
import type { SecretsProvider } from '../connect/index.js';
import { migrationState } from '../control/index.js';
import type { MigrationSpec } from '../spec/index.js';
import { sleep } from '../sql.js';
import { withSides } from './sides.js';

export type PausedAction = 'wait' | 'handed-over' | 'abandoned';

export interface PausedStatus {
  action: PausedAction;
  /** Why the run paused (or how it ended). */
  cause: string;
}

const POLL_MS = 2_000;

/** `execution`: the one whose loop asks; `waitUpToSeconds`: how long it looks again while the answer is "wait" (see replicationStatusStep). */
export async function pausedStatusStep(
  spec: MigrationSpec,
  secrets: SecretsProvider,
  { execution, waitUpToSeconds = 0 }: { execution: string; waitUpToSeconds?: number },
): Promise<PausedStatus> {
  const deadline = Date.now() + waitUpToSeconds * 1000;
  let status: PausedStatus = { action: 'wait', cause: '' };
  try {
    await withSides(spec, secrets, { target: true }, async ({ target }) => {
      for (;;) {
        const state = await migrationState(target, spec.name);
        if (!state || state.execution !== execution) {
          status = { action: 'handed-over', cause: `Migration ${spec.name} was resumed by ${state?.execution ?? 'another run'}, which goes on with it.` };
        } else if (state.phase === 'failed' || state.phase === 'done') {
          status = { action: 'abandoned', cause: `Migration ${spec.name} was abandoned while paused: ${state.error ?? 'no cause recorded'}` };
        } else {
          status = { action: 'wait', cause: state.error ?? '' };
        }
        if (status.action !== 'wait' || Date.now() + POLL_MS > deadline) return;
        await sleep(POLL_MS);
      }
    });
  } catch {
    // The target is out of reach: the run stays paused; the next turn of the loop looks again.
  }
  return status;
}

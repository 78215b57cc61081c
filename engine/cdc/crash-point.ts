/**
 * A crash point for tests only (test/integration/crash-points.test.ts). With the environment
 * variable below naming a file, the first checkpoint committed on the target after that file
 * appears removes it and stops this process (SIGSTOP) before the slot is acknowledged, so a test
 * can kill the streamer exactly between the target's COMMIT and the acknowledgement. Removing
 * the file makes it fire once: a restarted streamer runs on. Inert unless the variable is set.
 */
import { unlinkSync } from 'node:fs';

export const STOP_AFTER_CHECKPOINT_ENV = 'PGFERRY_TEST_STOP_AFTER_CHECKPOINT';

export function crashPointAfterCheckpoint(): void {
  const trigger = process.env[STOP_AFTER_CHECKPOINT_ENV];
  if (!trigger) return;
  try {
    unlinkSync(trigger);
  } catch {
    return; // not asked for (yet)
  }
  process.kill(process.pid, 'SIGSTOP');
}

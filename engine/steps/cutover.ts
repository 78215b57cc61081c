/** Cutover: fences the source if the spec says so, then tells the streamer the LSN to drain to. */
import { setDrainLsn, recordFence } from '../control/index.js';
import type { SecretsProvider } from '../connect/index.js';
import { recordEvent, setPhase } from '../control/index.js';
import { fenceSource, markDrainPoint } from '../cutover/index.js';
import type { MigrationSpec } from '../spec/index.js';
import { withSides } from './sides.js';

export async function cutoverStep(spec: MigrationSpec, secrets: SecretsProvider) {
  return withSides(spec, secrets, { source: true, target: true }, async ({ source, target }) => {
    let fence: { sessionsEnded: number } | undefined;
    if (spec.cutover.fenceSource) {
      await recordFence(target, spec.name, true);
      fence = await fenceSource(source);
      await recordEvent(target, spec.name, 'info', `cutover: source made read-only, ${fence.sessionsEnded} session(s) ended`);
    }
    const drainLsn = await markDrainPoint(source);
    await setDrainLsn(target, spec.name, drainLsn);
    await setPhase(target, spec.name, 'cutover');
    await recordEvent(target, spec.name, 'info', `cutover: draining to ${drainLsn}`);
    return { drainLsn, fenced: Boolean(fence), sessionsEnded: fence?.sessionsEnded ?? 0 };
  });
}

/**
 * Cutover: fences the source if the spec says so (the tables the publication carries, see
 * engine/cutover/fence.ts), then tells the streamer the LSN to drain to.
 */
import { dataTables, listTables } from '../catalog/tables.js';
import { setDrainLsn, recordFence } from '../control/index.js';
import type { SecretsProvider } from '../connect/index.js';
import { recordEvent, setPhase } from '../control/index.js';
import { fenceWrites, type FenceResult } from '../cutover/fence.js';
import { markDrainPoint } from '../cutover/index.js';
import type { MigrationSpec } from '../spec/index.js';
import { withSides } from './sides.js';

export async function cutoverStep(spec: MigrationSpec, secrets: SecretsProvider) {
  return withSides(spec, secrets, { source: true, target: true }, async ({ source, target }) => {
    let fence: FenceResult | undefined;
    if (spec.cutover.fenceSource) {
      // The tables the publication carries (engine/steps/replication-slot.ts); fenceWrites adds their parents. Read before the window opens.
      const tables = dataTables(await listTables(source, spec.objects));
      await recordFence(target, spec.name, true);
      fence = await fenceWrites(source, tables, { migration: spec.name });
      await recordEvent(
        target,
        spec.name,
        'info',
        `cutover: source fenced (writes refused on ${fence.tablesFenced} table(s), new sessions read-only), ${fence.sessionsEnded} session(s) ended`,
      );
    }
    const drainLsn = await markDrainPoint(source);
    await setDrainLsn(target, spec.name, drainLsn);
    await setPhase(target, spec.name, 'cutover');
    await recordEvent(target, spec.name, 'info', `cutover: draining to ${drainLsn}`);
    return { drainLsn, fenced: Boolean(fence), sessionsEnded: fence?.sessionsEnded ?? 0 };
  });
}

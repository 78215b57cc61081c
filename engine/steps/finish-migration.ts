/**
 * FinishMigration: fails the run on a comparison that found differences; otherwise ends CDC
 * (drops the slot and publication), arms the reverse stream (cutover.reverse) before the target
 * takes a write, marks the end of the window in which applications could not write (from the
 * fence until now), points the application's secret at the target (cutover.switch), and marks
 * the migration done, or in its Reverse phase.
 */
import { dropSlotAndPublication, replicationNames } from '../cdc/slot.js';
import { describeMismatches } from '../compare/index.js';
import type { SecretsProvider, SecretWriter } from '../connect/index.js';
import { clearChangeTracking, markTargetReady, recordEvent, recordReverseArmed, setPhase, loadComparisons } from '../control/index.js';
import { armReverse } from '../cutover/reverse.js';
import { pointApplicationAt } from '../cutover/switch.js';
import { PgferryError } from '../errors.js';
import type { MigrationSpec } from '../spec/index.js';
import { usesCdc, withSides } from './sides.js';
import { applyNameMapping } from '../schema/apply-mapping.js';
import { writeThroughFence } from '../cutover/fence.js';

export class CompareMismatchError extends PgferryError {
  constructor(message: string) {
    super('pgferry.CompareMismatch', message);
  }
}

export async function finishMigrationStep(spec: MigrationSpec, secrets: SecretsProvider & Partial<SecretWriter>) {
  return withSides(spec, secrets, { target: true, source: usesCdc(spec) }, async ({ source, target }) => {
    // Mode full without a comparison comes here straight from post-data.
    await applyNameMapping(target, spec);
    const comparisons = await loadComparisons(target, spec.name);
    const mismatches = describeMismatches(comparisons);
    if (mismatches) {
      const count = comparisons.filter((c) => c.status === 'mismatch').length;
      const message = `The comparison found differences in ${count} table(s):\n${mismatches.replace(/^/gm, '  - ')}`;
      // With CDC the run pauses instead (cleanup): its slot lets it go on once the rows are put right.
      if (!usesCdc(spec)) await setPhase(target, spec.name, 'failed', message);
      throw new CompareMismatchError(message);
    }
    let writeUnavailableSeconds: number | null = null;
    let reverse: { slotName: string; switchLsn: string } | undefined;
    if (usesCdc(spec)) {
      await writeThroughFence(source);
      const dropped = await dropSlotAndPublication(source, replicationNames(spec));
      await recordEvent(target, spec.name, 'info', `CDC ended: slot ${dropped.slotDropped ? 'dropped' : 'already gone'}`);
      // Before the target takes its first write: the reverse slot must see every one of them.
      if (spec.cutover.reverse) {
        const armed = (reverse = await armReverse(spec, source, target));
        await recordReverseArmed(target, spec.name, armed.switchLsn);
        await recordEvent(target, spec.name, 'info', `cutover: reverse replication armed at ${armed.switchLsn} (slot ${armed.slotName} on the target)`);
      }
      writeUnavailableSeconds = await markTargetReady(target, spec.name);
      if (writeUnavailableSeconds !== null) {
        await recordEvent(target, spec.name, 'info', `cutover: writes were unavailable for ${writeUnavailableSeconds.toFixed(2)} s, until the target was ready`);
      }
      if (spec.cutover.switch) await pointApplicationAt(spec, secrets, 'target', target);
      // The changed keys served the final comparison, which passed.
      await clearChangeTracking(target, spec.name);
    }
    await setPhase(target, spec.name, reverse ? 'reverse' : 'done');
    await recordEvent(
      target,
      spec.name,
      'info',
      reverse ? 'migration cut over: changes on the target flow back to the source until pgferry finish or pgferry fallback' : 'migration done',
    );
    return { tables: comparisons.length, compared: spec.compare.enabled, writeUnavailableSeconds, reverse: Boolean(reverse) };
  });
}

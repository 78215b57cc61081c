/**
 * FinishMigration: fails the run on a comparison that found differences; otherwise ends CDC
 * (drops the slot and publication), marks the migration done and, after a cutover, the end of the
 * window in which applications could not write (from the fence until now).
 */
import { dropSlotAndPublication, replicationNames } from '../cdc/slot.js';
import { describeMismatches } from '../compare/index.js';
import type { SecretsProvider } from '../connect/index.js';
import { markTargetReady, recordEvent, setPhase, loadComparisons } from '../control/index.js';
import { PgferryError } from '../errors.js';
import type { MigrationSpec } from '../spec/index.js';
import { usesCdc, withSides, writeThroughFence } from './sides.js';

export class CompareMismatchError extends PgferryError {
  constructor(message: string) {
    super('pgferry.CompareMismatch', message);
  }
}

export async function finishMigrationStep(spec: MigrationSpec, secrets: SecretsProvider) {
  return withSides(spec, secrets, { target: true, source: usesCdc(spec) }, async ({ source, target }) => {
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
    if (usesCdc(spec)) {
      await writeThroughFence(source);
      const dropped = await dropSlotAndPublication(source, replicationNames(spec));
      await recordEvent(target, spec.name, 'info', `CDC ended: slot ${dropped.slotDropped ? 'dropped' : 'already gone'}`);
      writeUnavailableSeconds = await markTargetReady(target, spec.name);
      if (writeUnavailableSeconds !== null) {
        await recordEvent(target, spec.name, 'info', `cutover: writes were unavailable for ${writeUnavailableSeconds.toFixed(2)} s, until the target was ready`);
      }
    }
    await setPhase(target, spec.name, 'done');
    await recordEvent(target, spec.name, 'info', 'migration done');
    return { tables: comparisons.length, compared: spec.compare.enabled, writeUnavailableSeconds };
  });
}

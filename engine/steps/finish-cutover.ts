/**
 * FinishCutover: drained, so before applications move the sequences take the source's values,
 * the triggers left disabled while replicating get their source state, NOT VALID domain checks
 * are added (engine/schema/domain-checks.ts), and the large objects and
 * materialized views, which the stream does not carry, are put right. The final comparison
 * runs here too when it is light (final-compare.ts).
 */
import type { SecretsProvider } from '../connect/index.js';
import { recordEvent, recordSchemaObjects } from '../control/index.js';
import { copySequenceValues } from '../schema/index.js';
import { restoreReplicaTriggers } from '../schema/replica-triggers.js';
import { addDomainChecksAtCutover } from '../schema/domain-checks.js';
import type { MigrationSpec } from '../spec/index.js';
import { resyncAtCutover } from './cutover-objects.js';
import { finalCompareInStep } from './final-compare.js';
import { withSides } from './sides.js';

export async function finishCutoverStep(spec: MigrationSpec, secrets: SecretsProvider) {
  const timings: string[] = [];
  const timed = async <T>(what: string, work: () => Promise<T>): Promise<T> => {
    const started = Date.now();
    const result = await work();
    timings.push(`${what} ${((Date.now() - started) / 1000).toFixed(2)} s`);
    return result;
  };
  let comparing: Promise<boolean> = Promise.resolve(false);
  const done = await withSides(spec, secrets, { source: true, target: true }, async ({ source, target }) => {
    const sequences = spec.cutover.syncSequences && spec.schema.sync.sequences ? await timed('sequences', () => copySequenceValues(source, target, spec)) : [];
    await recordSchemaObjects(target, spec.name, 'sequences', sequences);
    const resynced = await timed('large objects and materialized views', () => resyncAtCutover(spec, source, target));
    // Once the data it compares is final (sequences, large objects, materialized views), the final comparison reads on
    // connections of its own, beside the triggers and domain checks: all of it is inside the write-unavailable window.
    comparing = timed('final comparison', () => finalCompareInStep(spec, secrets));
    comparing.catch(() => undefined); // awaited below; handled now so an early failure is not an unhandled rejection
    const triggers = await timed('triggers', () => restoreReplicaTriggers(source, target, spec));
    const domainChecks = await timed('domain checks', () => addDomainChecksAtCutover(source, target, spec));
    await recordSchemaObjects(target, spec.name, 'cutover', [...triggers, ...domainChecks]);
    await Promise.allSettled([comparing]);
    await recordEvent(target, spec.name, 'info', `FinishCutover: ${timings.join(', ')}`);
    return { sequences: sequences.length, triggers: triggers.length, ...resynced };
  });
  const compared = await comparing;
  return { ...done, compared };
}

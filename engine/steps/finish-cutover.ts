/**
 * FinishCutover: drained, so before applications move the sequences take the source's values,
 * the triggers left disabled while replicating get their source state, NOT VALID domain checks
 * are added (engine/schema/domain-checks.ts), and the large objects and
 * materialized views, which the stream does not carry, are put right. The final comparison
 * runs here too when it is light (final-compare.ts).
 */
import type { SecretsProvider } from '../connect/index.js';
import { recordSchemaObjects } from '../control/index.js';
import { copySequenceValues } from '../schema/index.js';
import { restoreReplicaTriggers } from '../schema/replica-triggers.js';
import { addDomainChecksAtCutover } from '../schema/domain-checks.js';
import type { MigrationSpec } from '../spec/index.js';
import { resyncAtCutover } from './cutover-objects.js';
import { finalCompareInStep } from './final-compare.js';
import { withSides } from './sides.js';

export async function finishCutoverStep(spec: MigrationSpec, secrets: SecretsProvider) {
  return withSides(spec, secrets, { source: true, target: true }, async ({ source, target }) => {
    const sequences = spec.cutover.syncSequences && spec.schema.sync.sequences ? await copySequenceValues(source, target, spec) : [];
    await recordSchemaObjects(target, spec.name, 'sequences', sequences);
    const resynced = await resyncAtCutover(spec, source, target);
    const triggers = await restoreReplicaTriggers(source, target, spec);
    const domainChecks = await addDomainChecksAtCutover(source, target, spec);
    await recordSchemaObjects(target, spec.name, 'cutover', [...triggers, ...domainChecks]);
    const compared = await finalCompareInStep(spec, secrets, target);
    return { sequences: sequences.length, triggers: triggers.length, ...resynced, compared };
  });
}

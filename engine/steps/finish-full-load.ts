/**
 * FinishFullLoad: fails the run if a work unit was not copied, copies the sequence values, and
 * settles post-data at once when the copy workers left nothing for it to build.
 */
import type { SecretsProvider } from '../connect/index.js';
import { recordEvent, setPhase, recordSchemaObjects } from '../control/index.js';
import { loadTotals, unfinishedUnits, type UnfinishedUnit } from '../control/index.js';
import { PgferryError } from '../errors.js';
import { copySequenceValues, postDataLeftNothing } from '../schema/index.js';
import type { MigrationSpec } from '../spec/index.js';
import { qualified } from '../sql.js';
import { connectForStep, withSides } from './sides.js';

export class LoadFailedError extends PgferryError {
  constructor(message: string) {
    super('pgferry.LoadFailed', message);
  }
}

export interface FullLoadResult {
  units: number;
  rows: number;
  bytes: number;
  sequences: number;
  /** Whether the post-data task has statements to run. */
  postDataLeft: boolean;
}

export async function finishFullLoadStep(spec: MigrationSpec, secrets: SecretsProvider): Promise<FullLoadResult> {
  return withSides(spec, secrets, { source: true, target: true }, async ({ source, target }) => {
    const unfinished = await unfinishedUnits(target, spec.name);
    if (unfinished.length > 0) throw loadFailed(unfinished);
    const sequences = spec.schema.sync.sequences ? await copySequenceValues(source, target, spec) : [];
    await recordSchemaObjects(target, spec.name, 'sequences', sequences);
    const totals = await loadTotals(target, spec.name);
    // When the copy workers built every index and constraint, post-data is only its report: no task to start for it.
    // If that cannot be told (a failed read), the post-data task, which has no time limit, decides as it always did.
    const connect = (side: 'source' | 'target') => () => connectForStep(side, spec, secrets);
    const postData = await postDataLeftNothing(connect('source'), connect('target'), spec).catch(() => undefined);
    if (postData) {
      await setPhase(target, spec.name, 'post-data');
      await recordSchemaObjects(target, spec.name, 'post-data', postData.objects);
      await recordEvent(target, spec.name, 'info', `post-data: ${postData.objects.length} objects, nothing left to build after the load`);
    }
    return { ...totals, sequences: sequences.length, postDataLeft: !postData };
  });
}

function loadFailed(units: UnfinishedUnit[]): LoadFailedError {
  const lines = units.map(
    (u) => `  - unit ${u.id} (${qualified(u.source)}): ${u.state} after ${u.attempts} attempt(s)${u.lastError ? `: ${u.lastError}` : ''}`,
  );
  return new LoadFailedError(`The full load did not finish: ${units.length} work unit(s) not copied.\n${lines.join('\n')}`);
}

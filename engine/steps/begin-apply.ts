/** BeginApply: post-data has built the keys, so the streamer may start applying the changes it holds, under the mapped names. */
import { requestApply } from '../control/index.js';
import type { SecretsProvider } from '../connect/index.js';
import { recordEvent, setPhase } from '../control/index.js';
import type { MigrationSpec } from '../spec/index.js';
import { withSides } from './sides.js';
import { applyNameMapping } from '../schema/apply-mapping.js';

export async function beginApplyStep(spec: MigrationSpec, secrets: SecretsProvider) {
  return withSides(spec, secrets, { target: true }, async ({ target }) => {
    await applyNameMapping(target, spec);
    await requestApply(target, spec.name);
    await setPhase(target, spec.name, 'replicate');
    await recordEvent(target, spec.name, 'info', 'CDC: applying changes');
    return { applying: true };
  });
}

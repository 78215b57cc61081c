/**
 * `pgferry fallback SPEC` and `pgferry finish SPEC [--drop-control]`, locally: the request goes
 * to the run's control schema, the workflow's Reverse loop acts on it, and the command waits for
 * the outcome. A migration cut over without reverse replication has no workflow left: finish
 * does the work itself.
 */
import { controlSchemaExists, readAfterCutover } from '../../engine/control/index.js';
import { requestMigrationFallback, requestMigrationFinish } from '../../engine/cutover/request.js';
import { finishAfterCutoverStep } from '../../engine/steps/after-cutover.js';
import type { MigrationSpec } from '../../engine/spec/index.js';
import { sleep } from '../../engine/sql.js';
import { DefaultSecretsProvider } from '../../platform/secrets/index.js';
import { EXIT_FAILED, EXIT_OK } from '../exit-codes.js';
import type { Out } from '../format.js';
import { withControl, withTarget } from './target.js';

const POLL_MS = 500;

export async function fallbackCommand(path: string, out: Out, err: Out): Promise<number> {
  return withControl(path, err, async (target, spec) => {
    const result = await requestMigrationFallback(target, spec);
    if (!result.requested) {
      err.write(`${result.reason}\n`);
      return EXIT_FAILED;
    }
    out.write(`${result.message}\n`);
    return awaitOutcome(spec, 'fallen-back', out, err);
  });
}

export async function finishCommand(path: string, { dropControl }: { dropControl: boolean }, out: Out, err: Out): Promise<number> {
  return withControl(path, err, async (target, spec) => {
    const request = await requestMigrationFinish(target, spec, { dropControl });
    if (request.by === 'nobody') {
      err.write(`${request.reason}\n`);
      return EXIT_FAILED;
    }
    if (request.by === 'workflow') {
      out.write(`${request.message}\n`);
      return awaitOutcome(spec, 'finished', out, err);
    }
    const finished = await finishAfterCutoverStep(spec, new DefaultSecretsProvider(), { dropControl });
    out.write(finishedMessage(spec, finished));
    return EXIT_OK;
  });
}

function finishedMessage(spec: MigrationSpec, { fenceLifted, controlDropped }: { fenceLifted: boolean; controlDropped: boolean }): string {
  return (
    `Migration ${spec.name} finished: no replication slot or publication of it is left${fenceLifted ? ', the fence is lifted' : ''}` +
    `${controlDropped ? ', and the pgferry control schema is removed from both sides' : '; the control schema stays (pgferry finish SPEC --drop-control removes it)'}.\n`
  );
}

/** Waits, on a session of its own, until the workflow reports the outcome (or an error, or the control schema is gone after --drop-control). */
async function awaitOutcome(spec: MigrationSpec, outcome: 'fallen-back' | 'finished', out: Out, err: Out): Promise<number> {
  const secrets = new DefaultSecretsProvider();
  for (;;) {
    await sleep(POLL_MS);
    const state = await withTarget(spec, secrets, async (target) => ((await controlSchemaExists(target)) ? ((await readAfterCutover(target, spec.name)) ?? null) : 'gone'));
    if (state === 'gone') {
      out.write(finishedMessage(spec, { fenceLifted: true, controlDropped: true }));
      return EXIT_OK;
    }
    if (state?.lastError) {
      err.write(`${state.lastError}\n`);
      return EXIT_FAILED;
    }
    if (state?.outcome !== outcome) continue;
    if (outcome === 'finished') out.write(finishedMessage(spec, { fenceLifted: true, controlDropped: false }));
    else out.write(`Fell back to the source: writes were unavailable for ${state.fallbackWindowSeconds?.toFixed(2) ?? '?'} s. The source takes writes; the target stays fenced (pgferry finish SPEC lifts that fence).\n`);
    return EXIT_OK;
  }
}

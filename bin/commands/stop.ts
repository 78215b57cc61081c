/** `pgferry stop SPEC [--drop]`: pauses a local run (or abandons it with --drop), for instance one whose runner is gone. */
import { findMigration } from '../../engine/control/index.js';
import { cleanupStep } from '../../engine/steps/cleanup.js';
import { stopFailure } from '../../platform/aws/deployment.js';
import { DefaultSecretsProvider } from '../../platform/secrets/index.js';
import { EXIT_FAILED, EXIT_OK, EXIT_USAGE } from '../exit-codes.js';
import { cleanupDone, describeCleanup, type Out } from '../format.js';
import { readSpecForChecks } from '../spec-file.js';
import { withTarget } from './target.js';

/** A local run only (an AWS execution's run is stopped through StopExecution and the Operator, which reaches the databases). */
export async function stopCommand(path: string, { drop = false }: { drop?: boolean }, out: Out, err: Out): Promise<number> {
  const spec = await readSpecForChecks(path, err);
  if (!spec) return EXIT_USAGE;
  const secrets = new DefaultSecretsProvider();
  const registered = await withTarget(spec, secrets, (target) => findMigration(target, spec.name));
  if (registered?.execution?.startsWith('arn:')) {
    err.write(
      `Migration ${spec.name} on this target is run by the AWS execution ${registered.execution} (phase ${registered.phase}): ` +
        `stop it with: pgferry stop ${registered.execution}${drop ? ' --drop' : ''}\n`,
    );
    return EXIT_FAILED;
  }
  // A local run (or none registered: a leftover slot is still dropped); a run that registers meanwhile is left alone.
  const result = await cleanupStep(spec, secrets, stopFailure, registered?.execution ?? undefined, { abandon: drop });
  if (!result.cleaned) {
    const done = cleanupDone(result);
    err.write(`Migration ${spec.name}: ${done.length ? `${done.join(', ')}; but ` : ''}${result.reason}\n`);
    return EXIT_FAILED;
  }
  out.write(`${describeCleanup(spec.name, result, 'SPEC')}\n`);
  return EXIT_OK;
}

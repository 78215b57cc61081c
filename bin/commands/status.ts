/** `pgferry status SPEC`: a migration's status, read from its target. */
import { lostRunner } from '../../engine/lost-runner.js';
import { readMigrationStatus } from '../../engine/status.js';
import { EXIT_FAILED, EXIT_OK } from '../exit-codes.js';
import { formatStatus, type Out } from '../format.js';
import { withControl } from './target.js';

export async function statusCommand(path: string, out: Out, err: Out): Promise<number> {
  return withControl(path, err, async (target, spec) => {
    const status = await readMigrationStatus(target, spec.name);
    if (!status) {
      err.write(`Migration ${spec.name} has not started on this target (no state in its control schema).\n`);
      return EXIT_FAILED;
    }
    out.write(`${formatStatus(status)}\n`);
    const lost = await lostRunner(target, spec.name);
    if (lost) err.write(`${lost}\n`);
    return status.phase === 'failed' || lost ? EXIT_FAILED : EXIT_OK;
  });
}

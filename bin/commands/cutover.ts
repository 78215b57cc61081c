/** `pgferry cutover SPEC`: asks a running local CDC migration to cut over. */
import { requestMigrationCutover } from '../../engine/cutover/request.js';
import { EXIT_FAILED, EXIT_OK } from '../exit-codes.js';
import type { Out } from '../format.js';
import { withControl } from './target.js';

export async function cutoverCommand(path: string, out: Out, err: Out): Promise<number> {
  return withControl(path, err, async (target, spec) => {
    const result = await requestMigrationCutover(target, spec);
    if (!result.requested) {
      err.write(`${result.reason}\n`);
      return EXIT_FAILED;
    }
    out.write(`${result.message}\n`);
    return EXIT_OK;
  });
}

/** `pgferry precheck SPEC`: both databases checked against what the migration needs. */
import { runPrecheck } from '../../engine/precheck/index.js';
import { DefaultSecretsProvider } from '../../platform/secrets/index.js';
import { EXIT_FAILED, EXIT_OK, EXIT_USAGE } from '../exit-codes.js';
import { formatChecks, type Out } from '../format.js';
import { readSpecForChecks } from '../spec-file.js';

export async function precheckCommand(path: string, out: Out, err: Out): Promise<number> {
  const spec = await readSpecForChecks(path, err);
  if (!spec) return EXIT_USAGE;
  const report = await runPrecheck(spec, new DefaultSecretsProvider());
  out.write(`Precheck of migration ${spec.name}:\n${formatChecks(report.checks)}\n`);
  out.write(report.ok ? 'All checks passed.\n' : 'Precheck failed.\n');
  return report.ok ? EXIT_OK : EXIT_FAILED;
}

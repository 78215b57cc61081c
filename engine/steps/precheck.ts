/** Precheck: every check against both sides before anything is written; one failed check stops the run. */
import type { SecretsProvider } from '../connect/index.js';
import { PrecheckFailedError, runPrecheck } from '../precheck/index.js';
import type { MigrationSpec } from '../spec/index.js';

export async function precheckStep(spec: MigrationSpec, secrets: SecretsProvider) {
  const report = await runPrecheck(spec, secrets);
  if (!report.ok) throw new PrecheckFailedError(report.checks);
  return { checks: report.checks };
}

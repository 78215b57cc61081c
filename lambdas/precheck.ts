import { PrecheckFailedError, runPrecheck } from '../engine/precheck/index.js';
import { parseNormalizedSpec } from '../engine/spec/index.js';
import { DefaultSecretsProvider } from '../platform/secrets/index.js';
import { lambdaHandler } from './handler.js';

const secrets = new DefaultSecretsProvider();

export const handler = lambdaHandler(async (event: { spec: unknown }) => {
  const report = await runPrecheck(parseNormalizedSpec(event.spec), secrets);
  if (!report.ok) throw new PrecheckFailedError(report.checks);
  return { checks: report.checks };
});

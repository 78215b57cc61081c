import { PrecheckFailedError, runPrecheck } from '../engine/precheck/index.js';
import { lambdaHandler, specEvent, specMigration, specSecrets } from './handler.js';

export const handler = lambdaHandler({
  name: 'Precheck',
  input: specEvent,
  secrets: specSecrets,
  migration: specMigration,
  handler: async ({ spec }, { secrets }) => {
    const report = await runPrecheck(spec, secrets);
    if (!report.ok) throw new PrecheckFailedError(report.checks);
    return { checks: report.checks };
  },
});

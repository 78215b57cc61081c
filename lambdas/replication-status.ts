import { replicationStatusStep } from '../engine/steps/replication-status.js';
import { alertSinkFromEnvironment } from '../platform/alerts.js';
import { lambdaHandler, specEvent, specMigration, specSecrets, waitBudgetSeconds, waitUpToSecondsInput } from './handler.js';

export const handler = lambdaHandler({
  name: 'ReplicationStatus',
  input: specEvent.extend({ waitUpToSeconds: waitUpToSecondsInput }),
  secrets: specSecrets,
  migration: specMigration,
  handler: ({ spec, waitUpToSeconds }, { secrets, context }) =>
    replicationStatusStep(spec, secrets, { waitUpToSeconds: waitBudgetSeconds(waitUpToSeconds, context), alertSink: alertSinkFromEnvironment() }),
});

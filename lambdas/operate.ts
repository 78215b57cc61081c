/**
 * What the pgferry CLI asks of a run on AWS, where the target database is reachable only from
 * the VPC: its status from the control schema, or a cutover request. The CLI finds this function
 * through a tag of the state machine (platform/aws/deployment.ts) and passes the execution's
 * input, the spec as the person gave it.
 */
import { connectSide } from '../engine/connect/index.js';
import { PgferryError } from '../engine/errors.js';
import { parseSpec } from '../engine/spec/index.js';
import { readMigrationStatus, requestMigrationCutover } from '../engine/status.js';
import type { OperatorRequest, OperatorResponse } from '../platform/aws/deployment.js';
import { DefaultSecretsProvider } from '../platform/secrets/index.js';
import { lambdaHandler } from './handler.js';

const secrets = new DefaultSecretsProvider();

export const handler = lambdaHandler(async (event: OperatorRequest): Promise<OperatorResponse> => {
  if (event?.action !== 'status' && event?.action !== 'cutover') {
    throw new PgferryError('pgferry.InvalidRequest', `action must be "status" or "cutover", got ${JSON.stringify(event?.action)}`);
  }
  const spec = parseSpec(event.spec, { featureGate: false });
  const target = await connectSide('target', spec.target, secrets, { applicationName: 'pgferry-operator', retryWindowMs: 0 });
  try {
    if (event.action === 'status') return { action: 'status', status: (await readMigrationStatus(target, spec.name)) ?? null };
    return { action: 'cutover', result: await requestMigrationCutover(target, spec) };
  } finally {
    await target.end();
  }
});

/**
 * What the pgferry CLI asks of a run on AWS, where the target database is reachable only from
 * the VPC: its status from the control schema, or a cutover request. The CLI finds this function
 * through a tag of the state machine (platform/aws/deployment.ts) and passes the execution's
 * input, the spec as the person gave it.
 */
import { z } from 'zod';
import { connectSide } from '../engine/connect/index.js';
import { migrationSpecSchema } from '../engine/spec/index.js';
import { readMigrationStatus, requestMigrationCutover } from '../engine/status.js';
import type { OperatorRequest, OperatorResponse } from '../platform/aws/deployment.js';
import { lambdaHandler, specMigration } from './handler.js';

/** An OperatorRequest; the spec is read without the feature gate (it only reads the spec). */
const operatorRequest = z.object({
  action: z.enum(['status', 'cutover']),
  spec: migrationSpecSchema,
}) satisfies z.ZodType<OperatorRequest, unknown>;

export const handler = lambdaHandler({
  name: 'Operator',
  input: operatorRequest,
  // Only the target is read: the control schema lives there.
  secrets: ({ spec }) => [spec.target.secret],
  migration: specMigration,
  handler: async ({ action, spec }, { secrets }): Promise<OperatorResponse> => {
    const target = await connectSide('target', spec.target, secrets, { applicationName: 'pgferry-operator', retryWindowMs: 0 });
    try {
      if (action === 'status') return { action: 'status', status: (await readMigrationStatus(target, spec.name)) ?? null };
      return { action: 'cutover', result: await requestMigrationCutover(target, spec) };
    } finally {
      await target.end();
    }
  },
});

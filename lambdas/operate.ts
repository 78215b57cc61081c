/**
 * What the pgferry CLI asks of a run on AWS, where the databases are reachable only from the
 * VPC: its status from the control schema, a cutover request, or the cleanup of the run an
 * execution that has ended left registered (`pgferry stop`, when the stack's cleanup rule
 * failed). The CLI finds this function through a tag of the state machine
 * (platform/aws/deployment.ts) and passes the execution's input, the spec as the person gave it.
 */
import { z } from 'zod';
import { connectSide } from '../engine/connect/index.js';
import { cleanupStep } from '../engine/steps/cleanup.js';
import { migrationSpecSchema } from '../engine/spec/index.js';
import { requestMigrationCutover } from '../engine/cutover/request.js';
import { readMigrationStatus } from '../engine/status.js';
import { stopFailure, type OperatorRequest, type OperatorResponse } from '../platform/aws/deployment.js';
import { lambdaHandler, specMigration } from './handler.js';

/** An OperatorRequest; the spec is read without the feature gate (it only reads the spec). */
const operatorRequest = z
  .object({
    action: z.enum(['status', 'cutover', 'cleanup']),
    spec: migrationSpecSchema,
    execution: z.string().min(1).optional(),
    abandon: z.boolean().optional(),
  })
  .superRefine((request, context) => {
    // Without it, cleanup would end whatever run of the name is registered, perhaps a live one.
    if (request.action === 'cleanup' && request.execution === undefined) {
      context.addIssue({ code: 'custom', path: ['execution'], message: 'is required for the cleanup action: only the run of that execution is cleaned up' });
    }
  }) satisfies z.ZodType<OperatorRequest, unknown>;

export const handler = lambdaHandler({
  name: 'Operator',
  input: operatorRequest,
  // Status and cutover read only the target, where the control schema lives; cleanup also drops the slot on the source.
  secrets: ({ action, spec }) => (action === 'cleanup' ? [spec.source.secret, spec.target.secret] : [spec.target.secret]),
  migration: specMigration,
  handler: async ({ action, spec, execution, abandon }, { secrets }): Promise<OperatorResponse> => {
    // cleanupStep touches only the run `execution` registered, and leaves a finished one alone.
    if (action === 'cleanup') return { action: 'cleanup', result: await cleanupStep(spec, secrets, stopFailure, execution, { abandon }) };
    const target = await connectSide('target', spec.target, secrets, { applicationName: 'pgferry-operator', retryWindowMs: 0 });
    try {
      if (action === 'status') return { action: 'status', status: (await readMigrationStatus(target, spec.name)) ?? null };
      return { action: 'cutover', result: await requestMigrationCutover(target, spec) };
    } finally {
      await target.end();
    }
  },
});

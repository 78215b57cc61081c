/**
 * What the pgferry CLI asks of a run on AWS, where the databases are reachable only from the
 * VPC: its status from the control schema, a cutover request, new flow control limits
 * (`pgferry throttle`), or the cleanup of the run an
 * execution that has ended left registered (`pgferry stop`, when the stack's cleanup rule
 * failed). The CLI finds this function through a tag of the state machine
 * (platform/aws/deployment.ts) and passes the execution's input, the spec as the person gave it.
 */
import { z } from 'zod';
import { connectSide } from '../engine/connect/index.js';
import { cleanupStep } from '../engine/steps/cleanup.js';
import { migrationSpecSchema } from '../engine/spec/index.js';
import { requestMigrationCutover, requestMigrationFallback, requestMigrationFinish } from '../engine/cutover/request.js';
import { finishAfterCutoverStep } from '../engine/steps/after-cutover.js';
import { readMigrationStatus } from '../engine/status.js';
import { requestMigrationThrottle, throttleChangeSchema } from '../engine/flow/throttle.js';
import { stopFailure, type OperatorRequest, type OperatorResponse } from '../platform/aws/deployment.js';
import { lambdaHandler, specMigration } from './handler.js';

/** An OperatorRequest; the spec is read without the feature gate (it only reads the spec). */
const operatorRequest = z
  .object({
    action: z.enum(['status', 'cutover', 'cleanup', 'fallback', 'finish', 'throttle']),
    spec: migrationSpecSchema,
    execution: z.string().min(1).optional(),
    abandon: z.boolean().optional(),
    dropControl: z.boolean().optional(),
    throttle: throttleChangeSchema.optional(),
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
  // Status, cutover, fallback and throttle act only on the target, where the control schema lives; cleanup and finish also on the source.
  secrets: ({ action, spec }) => (action === 'cleanup' || action === 'finish' ? [spec.source.secret, spec.target.secret] : [spec.target.secret]),
  migration: specMigration,
  handler: async ({ action, spec, execution, abandon, dropControl = false, throttle }, { secrets }): Promise<OperatorResponse> => {
    // cleanupStep touches only the run `execution` registered, and leaves a finished one alone.
    if (action === 'cleanup') return { action: 'cleanup', result: await cleanupStep(spec, secrets, stopFailure, execution, { abandon }) };
    const target = await connectSide('target', spec.target, secrets, { applicationName: 'pgferry-operator', retryWindowMs: 0 });
    let finishHere = false;
    try {
      if (action === 'status') return { action: 'status', status: (await readMigrationStatus(target, spec.name)) ?? null };
      if (action === 'fallback') return { action: 'fallback', result: await requestMigrationFallback(target, spec) };
      if (action === 'cutover') return { action: 'cutover', result: await requestMigrationCutover(target, spec) };
      if (action === 'throttle') return { action: 'throttle', result: await requestMigrationThrottle(target, spec, throttle ?? {}) };
      const request = await requestMigrationFinish(target, spec, { dropControl });
      if (request.by === 'nobody') return { action: 'finish', result: { requested: false, reason: request.reason } };
      if (request.by === 'workflow') return { action: 'finish', result: { requested: true, message: request.message, done: false } };
      finishHere = true;
    } finally {
      await target.end();
    }
    // A run cut over without reverse replication has no workflow left: the Operator finishes it.
    if (finishHere) await finishAfterCutoverStep(spec, secrets, { dropControl });
    return { action: 'finish', result: { requested: true, done: true, message: `Migration ${spec.name} finished: fences lifted${dropControl ? ', control schema removed from both sides' : ''}.` } };
  },
});

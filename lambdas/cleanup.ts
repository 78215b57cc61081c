/**
 * Cleanup, invoked two ways: by the workflow's Cleanup state after a caught failure, and by an
 * EventBridge rule when an execution is stopped, times out or fails (Step Functions then runs
 * no state at all, or, for a caught failure, has run Cleanup already: it is safe to run twice),
 * so the slot, the publication and a cutover fence never outlive the run. From an event it
 * touches only the run that execution registered (see cleanupStep).
 */
import { z } from 'zod';
import { cleanupStep } from '../engine/steps/cleanup.js';
import { runInputOf } from '../engine/steps/validate-spec.js';
import { describeFailure } from '../platform/aws/step-functions-failure.js';
import { alertSinkFromEnvironment } from '../platform/alerts.js';
import { parseSpec, type MigrationSpec } from '../engine/spec/index.js';
import { lambdaHandler, specEvent } from './handler.js';

/** From the workflow's Cleanup state: the normalized spec and the error its Catch caught. */
const failureEvent = specEvent.extend({
  error: z.object({ Error: z.string().optional(), Cause: z.string().optional() }),
  execution: z.string().optional(),
});

/** From EventBridge: "Step Functions Execution Status Change" of an execution that ended without succeeding. */
const statusChangeEvent = z
  .object({
    'detail-type': z.literal('Step Functions Execution Status Change'),
    detail: z.object({ status: z.string(), executionArn: z.string(), input: z.string().nullish() }),
  })
  .transform((event) => ({ ...event, spec: specOfExecution(event.detail.input) }));

/** The execution's input is the spec as the person gave it, or a resume of it (ValidateSpec fills in the defaults); undefined if it is none. */
function specOfExecution(input: string | null | undefined): MigrationSpec | undefined {
  try {
    return parseSpec(runInputOf(JSON.parse(input ?? 'null')).spec);
  } catch {
    return undefined;
  }
}

const isEventBridgeEvent = (event: unknown) => typeof event === 'object' && event !== null && 'detail' in event;

export const handler = lambdaHandler({
  name: 'Cleanup',
  input: (event): typeof failureEvent | typeof statusChangeEvent => (isEventBridgeEvent(event) ? statusChangeEvent : failureEvent),
  secrets: ({ spec }) => (spec ? [spec.source.secret, spec.target.secret] : []),
  migration: ({ spec }) => spec?.name,
  handler: async (event, { secrets }) => {
    if (!('detail' in event)) {
      // The pause records the cause as a person reads it, not a Lambda's error JSON.
      const { error, cause } = describeFailure(event.error);
      return cleanupStep(event.spec, secrets, { Error: error, Cause: cause }, event.execution, { alertSink: alertSinkFromEnvironment(), alertUnregistered: true });
    }
    const { status, executionArn } = event.detail;
    if (!event.spec) return { cleaned: false, reason: `execution ${executionArn} had no valid spec as input: it cannot have created anything` };
    const reason = status === 'TIMED_OUT' ? 'States.Timeout' : status === 'ABORTED' ? 'pgferry.Stopped' : 'pgferry.ExecutionFailed';
    return cleanupStep(event.spec, secrets, { Error: reason, Cause: `The execution ${executionArn} ended ${status}.` }, executionArn, {
      alertSink: alertSinkFromEnvironment(),
    });
  },
});

/**
 * Cleanup, invoked two ways: by the workflow's Cleanup state after a caught failure, and by an
 * EventBridge rule when an execution is stopped or times out (Step Functions then runs no
 * state at all, so the slot, the publication and a cutover fence would outlive the run).
 */
import type { EventBridgeEvent } from 'aws-lambda';
import type { CaughtError } from '../engine/failure.js';
import { cleanupStep } from '../engine/migration.js';
import { parseNormalizedSpec, parseSpec } from '../engine/spec/index.js';
import { DefaultSecretsProvider } from '../platform/secrets/index.js';
import { lambdaHandler } from './handler.js';

const secrets = new DefaultSecretsProvider();

type ExecutionStatusChange = EventBridgeEvent<'Step Functions Execution Status Change', { status: string; executionArn: string; input: string | null }>;
type CleanupEvent = { spec: unknown; error: CaughtError } | ExecutionStatusChange;

export const handler = lambdaHandler(async (event: CleanupEvent) => {
  if (!('detail' in event)) return cleanupStep(parseNormalizedSpec(event.spec), secrets, event.error);
  const { status, executionArn, input } = event.detail;
  let spec;
  try {
    // The execution's input is the spec as the person gave it (ValidateSpec fills in the defaults).
    spec = parseSpec(JSON.parse(input ?? 'null'), { featureGate: false });
  } catch {
    return { cleaned: false, reason: `execution ${executionArn} had no valid spec as input: it cannot have created anything` };
  }
  const reason = status === 'TIMED_OUT' ? 'States.Timeout' : 'pgferry.Stopped';
  return cleanupStep(spec, secrets, { Error: reason, Cause: `The execution ${executionArn} ended ${status}.` });
});

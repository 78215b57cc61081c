/**
 * The Operator function (lambdas/operate.ts), as the CLI asks it for a run's progress, its
 * cutover, and the cleanup of a run an ended execution left registered. The function's ARN is
 * a tag on the state machine.
 */
import { InvokeCommand, LambdaClient } from '@aws-sdk/client-lambda';
import { parseStateMachineArn, regionOfArn } from './arns.js';
import { AwsCallError, readTags, requireTag, send } from './calls.js';
import type { OperatorRequest, OperatorResponse } from './deployment.js';

function unexpectedResponse(response: unknown): never {
  throw new Error(`the Operator function answered ${JSON.stringify(response).slice(0, 200)}`);
}

/** The Operator's answer to `request`: one for another action is refused here. */
export async function invokeOperator<A extends OperatorRequest['action']>(
  stateMachineArn: string,
  request: OperatorRequest & { action: A },
): Promise<Extract<OperatorResponse, { action: A }>> {
  const stateMachine = parseStateMachineArn(stateMachineArn, "the execution's state machine");
  const functionArn = requireTag(await readTags(stateMachine), 'operatorFunction', stateMachine);
  const region = regionOfArn(functionArn) ?? stateMachine.region;
  const response = await send(
    {
      action: `ask the Operator function for the ${request.action}`,
      permission: 'lambda:InvokeFunction',
      resource: { arn: functionArn, region, account: stateMachine.account },
      notFound: `the Operator function ${functionArn} does not exist; redeploy the pgferry stack`,
    },
    () => new LambdaClient({ region }).send(new InvokeCommand({ FunctionName: functionArn, Payload: JSON.stringify(request) })),
  );
  const text = response.Payload ? new TextDecoder().decode(response.Payload) : '';
  let payload: unknown;
  try {
    payload = JSON.parse(text);
  } catch {
    payload = undefined;
  }
  if (response.FunctionError) {
    const { errorType, errorMessage } = (payload ?? {}) as { errorType?: string; errorMessage?: string };
    throw new AwsCallError(`the Operator function failed (${errorType ?? response.FunctionError}): ${errorMessage ?? (text || 'no message')}`, errorType ?? 'FunctionError');
  }
  if (typeof payload !== 'object' || payload === null || (payload as { action?: unknown }).action !== request.action) unexpectedResponse(payload ?? text);
  return payload as Extract<OperatorResponse, { action: A }>;
}

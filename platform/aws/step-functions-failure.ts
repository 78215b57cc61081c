/**
 * Turns an error caught by the workflow into a name and a cause a person can read. The Cause
 * Step Functions records depends on where the error came from: a Lambda's is JSON with
 * errorType/errorMessage, an ECS task's is the task description, a timeout's is plain text.
 */
export interface CaughtError {
  Error?: string;
  Cause?: string;
}

export interface FailureDescription {
  error: string;
  cause: string;
}

interface EcsTaskDescription {
  StoppedReason?: string;
  StopCode?: string;
  TaskDefinitionArn?: string;
  Containers?: { Name?: string; ExitCode?: number; Reason?: string }[];
}

function parseJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

function describeEcsTask(task: EcsTaskDescription): string {
  const containers = (task.Containers ?? [])
    .map((c) => `${c.Name ?? 'container'} exited with code ${c.ExitCode ?? 'unknown'}${c.Reason ? ` (${c.Reason})` : ''}`)
    .join('; ');
  const reason = task.StoppedReason ? `: ${task.StoppedReason}` : '';
  return `The ${task.TaskDefinitionArn?.split('/').pop() ?? 'Fargate'} task stopped${reason}${containers ? ` — ${containers}` : ''}.`;
}

export function describeFailure(caught: CaughtError): FailureDescription {
  const error = caught.Error || 'pgferry.Failed';
  const cause = caught.Cause ?? '';
  if (error === 'States.Timeout') {
    return { error, cause: `A step ran longer than its time limit. ${cause}`.trim() };
  }
  if (error === 'States.HeartbeatTimeout') {
    return {
      error,
      cause: `A task (snapshot holder or CDC streamer) sent no heartbeat for longer than the state's HeartbeatSeconds before reporting: it did not start, or hung. Its log in CloudWatch Logs says which. ${cause}`.trim(),
    };
  }
  const parsed = parseJson(cause);
  if (parsed && typeof parsed === 'object') {
    const lambdaError = parsed as { errorType?: string; errorMessage?: string };
    if (typeof lambdaError.errorMessage === 'string') {
      return { error: lambdaError.errorType || error, cause: lambdaError.errorMessage };
    }
    const task = parsed as EcsTaskDescription;
    if (task.Containers || task.StoppedReason) return { error, cause: describeEcsTask(task) };
  }
  return { error, cause: cause || `The migration failed with ${error}.` };
}

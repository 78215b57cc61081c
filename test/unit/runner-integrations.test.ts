import { describe, expect, it } from 'vitest';
import type { LambdaFunctionDefinition } from '../../lambdas/registry.js';
import type { FargateTaskDefinition } from '../../tasks/registry.js';
import { localFunctionArn, localTaskDefinitionArn, substituteLocally, WorkflowDefinitionError, wiredBy } from '../../local/runner/definition.js';
import {
  callbackOutcome,
  containerEnvironment,
  lambdaContext,
  lambdaFailure,
  lambdaResponse,
  stoppedTaskDescription,
  TOKEN_MARKER,
  withTaskToken,
} from '../../local/runner/integrations.js';

const fn: LambdaFunctionDefinition = { name: 'Precheck', entry: 'lambdas/precheck.ts', arnPlaceholder: 'PrecheckFunctionArn', timeoutSeconds: 30, memoryMb: 256, needsDatabase: true };
const task: FargateTaskDefinition = { name: 'Copy', entry: 'tasks/copy.ts', taskDefinitionPlaceholder: 'CopyTaskDefinitionArn', containerName: 'pgferry' };

describe('the workflow definition, locally', () => {
  it('replaces Lambda, task and infrastructure placeholders with local stand-ins', () => {
    const text = '{"f": "${PrecheckFunctionArn}", "t": "${CopyTaskDefinitionArn}", "c": "${ClusterArn}", "s": "${TaskSubnetIds}", "g": "${TaskSecurityGroupIds}"}';
    expect(JSON.parse(substituteLocally(text, { lambdas: [fn], tasks: [task] }))).toEqual({
      f: 'arn:aws:lambda:local:000000000000:function:pgferry-Precheck',
      t: 'arn:aws:ecs:local:000000000000:task-definition/pgferry-Copy:1',
      c: 'arn:aws:ecs:local:000000000000:cluster/pgferry',
      s: 'subnet-local',
      g: 'sg-local',
    });
  });

  it('finds the Lambda or task a state names by its local ARN, and names the state when it cannot', () => {
    expect(wiredBy([fn], localFunctionArn, localFunctionArn(fn), 'function', 'Precheck')).toBe(fn);
    expect(() => wiredBy([task], localTaskDefinitionArn, 'arn:unknown', 'task definition', 'FullLoad')).toThrow(WorkflowDefinitionError);
    expect(() => wiredBy([task], localTaskDefinitionArn, 'arn:unknown', 'task definition', 'FullLoad')).toThrow(/State FullLoad names task definition arn:unknown/);
  });
});

describe('lambda:invoke, locally', () => {
  it('returns the payload as the integration does, JSON round-tripped', () => {
    expect(lambdaResponse({ at: new Date('2025-01-01T00:00:00Z'), skipped: undefined })).toEqual({
      ExecutedVersion: '$LATEST',
      Payload: { at: '2025-01-01T00:00:00.000Z' },
      StatusCode: 200,
    });
    expect(lambdaResponse(undefined).Payload).toBeNull();
  });

  it("fails with the handler's error name as the error and Lambda's error document as the cause", () => {
    const thrown = Object.assign(new Error('no route to source'), { name: 'PrecheckFailed' });
    const failure = lambdaFailure(thrown, 'request-1');
    expect(failure.name).toBe('PrecheckFailed');
    expect(JSON.parse(failure.message)).toEqual({ errorType: 'PrecheckFailed', errorMessage: 'no route to source', requestId: 'request-1', trace: [] });
  });

  it('names a thrown non-error Error, with its text as the message', () => {
    const failure = lambdaFailure('plain text', 'request-2');
    expect(failure.name).toBe('Error');
    expect(JSON.parse(failure.message)).toMatchObject({ errorType: 'Error', errorMessage: 'plain text' });
  });

  it('gives the handler a Lambda-like context', () => {
    const context = lambdaContext(fn, 'request-3');
    expect(context).toMatchObject({ functionName: 'pgferry-Precheck', functionVersion: '$LATEST', awsRequestId: 'request-3', callbackWaitsForEmptyEventLoop: false });
    expect(context.getRemainingTimeInMillis()).toBe(30_000);
  });
});

describe('ecs:runTask, locally', () => {
  const overrides = (containers: { Name?: string; Environment?: { Name: string; Value: string }[] }[]) => ({ Overrides: { ContainerOverrides: containers } });

  it("takes the task's container environment from the overrides, else the first container's", () => {
    const env = [{ Name: 'UNIT', Value: 7 as unknown as string }];
    expect(containerEnvironment(overrides([{ Name: 'other', Environment: [] }, { Name: 'pgferry', Environment: env }]), task)).toEqual({ UNIT: '7' });
    expect(containerEnvironment(overrides([{ Name: 'sidecar', Environment: env }]), task)).toEqual({ UNIT: '7' });
    expect(containerEnvironment({}, task)).toEqual({});
  });

  it('puts the fresh task token where the ASL passed $$.Task.Token', () => {
    expect(withTaskToken({ PGFERRY_TASK_TOKEN: TOKEN_MARKER, OTHER: 'kept' }, 'token-1')).toEqual({ PGFERRY_TASK_TOKEN: 'token-1', OTHER: 'kept' });
  });

  it('describes a task that exited 0 without a reason', () => {
    expect(stoppedTaskDescription(task, 'arn:task/1', 'copied\n', 0, null)).toEqual({
      TaskArn: 'arn:task/1',
      TaskDefinitionArn: 'arn:aws:ecs:local:000000000000:task-definition/pgferry-Copy:1',
      LastStatus: 'STOPPED',
      StopCode: 'EssentialContainerExited',
      StoppedReason: 'Essential container in task exited',
      Containers: [{ Name: 'pgferry', LastStatus: 'STOPPED', ExitCode: 0, Reason: undefined }],
    });
  });

  it("gives a failed task's last output line as the container's reason, and a killed one's signal", () => {
    const failed = stoppedTaskDescription(task, 'arn:task/2', 'starting\nrelation "missing" does not exist\n', 3, null);
    expect(failed.Containers[0]).toMatchObject({ ExitCode: 3, Reason: 'relation "missing" does not exist' });
    const killed = stoppedTaskDescription(task, 'arn:task/3', '', null, 'SIGTERM');
    expect(killed.StoppedReason).toBe('Killed by SIGTERM');
    expect(killed.Containers[0]).toMatchObject({ ExitCode: undefined, Reason: undefined });
    expect(stoppedTaskDescription(task, 'arn:task/4', 'x'.repeat(2000), 1, null).Containers[0]!.Reason).toHaveLength(1000);
  });

  it("reads a callback task's report: output on success, the reported error on failure, nothing for another token", () => {
    expect(callbackOutcome({ pgferryTaskCallback: 'success', token: 't', output: { rows: 3 } }, 't')).toEqual({ output: { rows: 3 } });
    const outcome = callbackOutcome({ pgferryTaskCallback: 'failure', token: 't', error: 'pgferry.ReplicationFailed', cause: 'slot gone' }, 't');
    expect(outcome && 'failure' in outcome && [outcome.failure.name, outcome.failure.message]).toEqual(['pgferry.ReplicationFailed', 'slot gone']);
    const bare = callbackOutcome({ pgferryTaskCallback: 'failure', token: 't' }, 't');
    expect(bare && 'failure' in bare && bare.failure.name).toBe('States.TaskFailed');
    expect(callbackOutcome({ pgferryTaskCallback: 'success', token: 'other' }, 't')).toBeUndefined();
    expect(callbackOutcome({ pgferryTaskCallback: 'heartbeat', token: 't' }, 't')).toBeUndefined();
    expect(callbackOutcome(undefined, 't')).toBeUndefined();
  });
});

/**
 * The local stand-ins for the service integrations the workflow uses: `lambda:invoke` calls the
 * handler of lambdas/ in-process, `ecs:runTask.sync` and `ecs:runTask.waitForTaskToken` start
 * the tasks/ entrypoint as a child process with the container overrides as its environment.
 * Each returns (or fails with) what the AWS integration returns, so the ASL's
 * ResultSelector/Catch behave the same in both worlds.
 */
import { randomUUID } from 'node:crypto';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { UNREACHABLE } from '../../engine/connect/outage.js';
import type { LambdaFunctionDefinition } from '../../lambdas/registry.js';
import type { IpcCallbackMessage } from '../../platform/task-callback.js';
import type { FargateTaskDefinition } from '../../tasks/registry.js';
import { localFunctionArn, localTaskDefinitionArn, taskStates, WorkflowDefinitionError, wiredBy, type AnyState, type StateMap, type Wiring } from './definition.js';
import type { StateMachineDefinition } from './interpreter.js';
import { repositoryRoot } from './paths.js';
import type { TaskBundle } from './task-bundles.js';
import { killAfter, startTaskProcess, type TaskProcess, type TaskProcesses, type TaskWatchers } from './task-pool.js';

/** Stands in for `$$.Task.Token` in the context; each callback task gets a fresh token instead. */
export const TOKEN_MARKER = 'pgferry-local-task-token';

/** Stands in for `$$.State.EnteredTime`, which aws-local-stepfunctions does not set; each Lambda invoker puts its state's in. */
export const ENTERED_TIME_MARKER = 'pgferry-local-state-entered-time';

export const roundTrip = <T>(value: T): T => (value === undefined ? (null as T) : JSON.parse(JSON.stringify(value)));

/** An error as the local interpreter needs it: `name` is the Step Functions error, `message` the Cause. */
export function stepError(name: string, cause: string): Error {
  const error = new Error(cause);
  error.name = name;
  return error;
}

/** The Lambda context a handler gets. */
export function lambdaContext(fn: LambdaFunctionDefinition, requestId: string) {
  return {
    functionName: `pgferry-${fn.name}`,
    functionVersion: '$LATEST',
    awsRequestId: requestId,
    getRemainingTimeInMillis: () => fn.timeoutSeconds * 1000,
    callbackWaitsForEmptyEventLoop: false,
  };
}

/** What `lambda:invoke` returns for a handler's result. */
export const lambdaResponse = (result: unknown) => ({ ExecutedVersion: '$LATEST', Payload: roundTrip(result), StatusCode: 200 });

/** How `lambda:invoke` fails for a handler's error: the errorType as the error, Lambda's error document as the Cause. */
export function lambdaFailure(error: unknown, requestId: string): Error {
  const errorType = (error as Error)?.name || 'Error';
  const errorMessage = (error as Error)?.message ?? String(error);
  return stepError(errorType, JSON.stringify({ errorType, errorMessage, requestId, trace: [] }));
}

/**
 * The state's `$$.State.EnteredTime` in a payload that asked for it. The interpreter does not
 * tell a retry from a new entry, so the invoker of a state (one per state) keeps it: after an
 * attempt that failed with pgferry.Unreachable, the one error the workflow retries locally, the
 * next call is a retry of the same entry; after anything else, a new entry.
 */
class EnteredTime {
  #retrying?: string;

  payload(payload: unknown): unknown {
    const entered = (this.#retrying ??= new Date().toISOString());
    if (typeof payload !== 'object' || payload === null) return payload;
    return Object.fromEntries(Object.entries(payload).map(([key, value]) => [key, value === ENTERED_TIME_MARKER ? entered : value]));
  }

  ended(error?: unknown): void {
    if ((error as Error | undefined)?.name !== UNREACHABLE) this.#retrying = undefined;
  }
}

export function lambdaInvoker(fn: LambdaFunctionDefinition) {
  let module: Promise<{ handler: (event: unknown, context: unknown) => Promise<unknown> }> | undefined;
  const enteredTime = new EnteredTime();
  return async (input: unknown) => {
    module ??= import(pathToFileURL(join(repositoryRoot, fn.entry)).href);
    const { handler } = await module;
    const { Payload } = input as { Payload?: unknown };
    const requestId = randomUUID();
    try {
      const result = await handler(roundTrip(enteredTime.payload(Payload)), lambdaContext(fn, requestId));
      enteredTime.ended();
      return lambdaResponse(result);
    } catch (error) {
      enteredTime.ended(error);
      throw lambdaFailure(error, requestId);
    }
  };
}

export interface ContainerOverrides {
  Overrides?: { ContainerOverrides?: { Name?: string; Environment?: { Name: string; Value: string }[] }[] };
}

/** The environment the overrides give the task's container (or the first one named). */
export function containerEnvironment(input: ContainerOverrides, task: FargateTaskDefinition): Record<string, string> {
  const overrides = input.Overrides?.ContainerOverrides ?? [];
  const container = overrides.find((o) => o.Name === task.containerName) ?? overrides[0];
  return Object.fromEntries((container?.Environment ?? []).map(({ Name, Value }) => [Name, String(Value)]));
}

/** The environment with `token` wherever the ASL passed `$$.Task.Token`. */
export function withTaskToken(environment: Record<string, string>, token: string): Record<string, string> {
  return Object.fromEntries(Object.entries(environment).map(([key, value]) => [key, value === TOKEN_MARKER ? token : value]));
}

/** What `ecs:runTask.sync` returns (or puts in the Cause) for a task that stopped. */
export function stoppedTaskDescription(task: FargateTaskDefinition, taskArn: string, outputTail: string, code: number | null, signal: NodeJS.Signals | null) {
  const lastLine = outputTail.trim().split('\n').pop() ?? '';
  return {
    TaskArn: taskArn,
    TaskDefinitionArn: localTaskDefinitionArn(task),
    LastStatus: 'STOPPED',
    StopCode: 'EssentialContainerExited',
    StoppedReason: signal ? `Killed by ${signal}` : 'Essential container in task exited',
    Containers: [
      {
        Name: task.containerName,
        LastStatus: 'STOPPED',
        ExitCode: code ?? undefined,
        Reason: code === 0 ? undefined : lastLine.slice(0, 1000) || undefined,
      },
    ],
  };
}

/** What a task's callback message means for its state: its output, its failure, or nothing (not for this token). */
export function callbackOutcome(message: IpcCallbackMessage | undefined, token: string): { output: unknown } | { failure: Error } | undefined {
  if (message?.token !== token) return undefined;
  if (message.pgferryTaskCallback === 'success') return { output: roundTrip(message.output) };
  if (message.pgferryTaskCallback === 'failure') return { failure: stepError(message.error ?? 'States.TaskFailed', message.cause ?? '') };
  return undefined;
}

/** What the ECS integrations start task processes with. */
export interface TaskLauncher {
  processes: TaskProcesses;
  bundleOf: (task: FargateTaskDefinition) => Promise<TaskBundle>;
  watchers: TaskWatchers;
}

interface TaskRun extends TaskProcess {
  taskArn: string;
  /** The task's description once stopped with `code` or `signal`. */
  description: (code: number | null, signal: NodeJS.Signals | null) => ReturnType<typeof stoppedTaskDescription>;
}

async function startTask(stateName: string, task: FargateTaskDefinition, env: Record<string, string>, launcher: TaskLauncher): Promise<TaskRun> {
  const { script } = await launcher.bundleOf(task);
  if (launcher.watchers.signal?.aborted) throw stepError('States.TaskFailed', 'The run was stopped before the task started.');
  const started = startTaskProcess(launcher.processes, { state: stateName, task: task.name, script, env }, launcher.watchers);
  const taskArn = `arn:aws:ecs:local:000000000000:task/pgferry/${randomUUID()}`;
  return { ...started, taskArn, description: (code, signal) => stoppedTaskDescription(task, taskArn, started.tail(), code, signal) };
}

/** The state's own time limit: the task's process is killed when it passes. */
const timeLimitSeconds = (state: AnyState) => (typeof state.TimeoutSeconds === 'number' ? state.TimeoutSeconds : 60);

function syncTaskRunner(stateName: string, state: AnyState, task: FargateTaskDefinition, launcher: TaskLauncher) {
  return async (input: unknown) => {
    const run = await startTask(stateName, task, containerEnvironment(input as ContainerOverrides, task), launcher);
    const clear = killAfter(run.child, timeLimitSeconds(state));
    const { code, signal } = await run.exited;
    clear();
    const description = run.description(code, signal);
    if (code !== 0) throw stepError('States.TaskFailed', JSON.stringify(description));
    return description;
  };
}

function callbackTaskRunner(stateName: string, state: AnyState, task: FargateTaskDefinition, launcher: TaskLauncher) {
  return async (input: unknown) => {
    const token = randomUUID();
    const environment = withTaskToken(containerEnvironment(input as ContainerOverrides, task), token);
    const run = await startTask(stateName, task, environment, launcher);
    const clear = killAfter(run.child, timeLimitSeconds(state));
    try {
      return await new Promise<unknown>((resolve, reject) => {
        run.child.on('message', (message: IpcCallbackMessage) => {
          const outcome = callbackOutcome(message, token);
          if (outcome && 'output' in outcome) resolve(outcome.output);
          if (outcome && 'failure' in outcome) reject(outcome.failure);
        });
        void run.exited.then(({ code, signal }) =>
          reject(stepError('States.TaskFailed', JSON.stringify({ ...run.description(code, signal), StoppedReason: 'The task exited before it reported its result' }))),
        );
      });
    } finally {
      clear();
    }
  };
}

/** The execution a local run started (`states:startExecution` of its own state machine): the runner runs it once this one ends. */
export interface LocalContinuation {
  next?: { executionId: string; input: unknown };
}

/** `states:startExecution` locally: records the input for the runner, and answers as the integration does. */
function executionStarter(continuation: LocalContinuation) {
  return async (input: unknown) => {
    const executionId = `local:${randomUUID()}`;
    continuation.next = { executionId, input: roundTrip((input as { Input?: unknown }).Input) };
    return { ExecutionArn: executionId, StartDate: new Date().toISOString() };
  };
}

/** A local handler for every Task state of the definition, keyed by state name. */
export function localHandlers(definition: StateMachineDefinition, wiring: Wiring, launcher: TaskLauncher, continuation: LocalContinuation = {}) {
  const handlers: Record<string, (input: unknown) => Promise<unknown>> = {};
  for (const [name, state] of taskStates(definition.States as unknown as StateMap)) {
    if (handlers[name]) throw new WorkflowDefinitionError(`Two Task states are named ${name}; local handlers are keyed by state name.`);
    const parameters = state.Parameters ?? {};
    const taskOf = () => wiredBy(wiring.tasks, localTaskDefinitionArn, parameters.TaskDefinition, 'task definition', name);
    switch (state.Resource) {
      case 'arn:aws:states:::lambda:invoke':
        handlers[name] = lambdaInvoker(wiredBy(wiring.lambdas, localFunctionArn, parameters.FunctionName, 'function', name));
        break;
      case 'arn:aws:states:::ecs:runTask.sync':
        handlers[name] = syncTaskRunner(name, state, taskOf(), launcher);
        break;
      case 'arn:aws:states:::ecs:runTask.waitForTaskToken':
        handlers[name] = callbackTaskRunner(name, state, taskOf(), launcher);
        break;
      case 'arn:aws:states:::states:startExecution':
        handlers[name] = executionStarter(continuation);
        break;
      default:
        throw new WorkflowDefinitionError(`State ${name} uses resource ${state.Resource}, which the local runner cannot run.`);
    }
  }
  return handlers;
}

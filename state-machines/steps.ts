/**
 * The building blocks of the workflow description (definition.ts): the Lambda step, the
 * Fargate task, the catchers, and the names the ASL shares with the rest of the repository
 * (the spec's fields, the registries' placeholders, the infrastructure placeholders CDK fills).
 * Key order matters: the generated JSON is compared as text with the checked-in file.
 */
import { UNREACHABLE } from '../engine/connect/outage.js';
import { lambdaFunctions } from '../lambdas/registry.js';
import { fargateTasks } from '../tasks/registry.js';

export type State = Record<string, unknown>;

/** Placeholders of the workflow that name infrastructure rather than a function or a task definition. */
export const infrastructurePlaceholders = {
  cluster: 'ClusterArn',
  /** Comma-separated; the ASL splits it with States.StringSplit. */
  subnets: 'TaskSubnetIds',
  /** Comma-separated; the ASL splits it with States.StringSplit. */
  securityGroups: 'TaskSecurityGroupIds',
} as const;

/** The spec's fields the workflow reads, each named once (dotted, under the spec). */
export const specFields = {
  name: 'name',
  target: 'target',
  mode: 'mode',
  startAt: 'startAt',
  finalCompare: 'cutover.finalCompare',
  /** How many copy workers run at once (PlanFullLoad sizes the pool from it). */
  parallelism: 'fullLoad.parallelism',
  /** How long a task waits for a side that is out of reach (it reads the spec from the target). */
  retryWindowMinutes: 'cdc.retryWindowMinutes',
} as const;

/** The spec as every state after ValidateSpec has it in its input. */
export const specPath = '$.spec';

/** A spec field as a JSONPath into the state input. */
export function specField(field: keyof typeof specFields): string {
  return `${specPath}.${specFields[field]}`;
}

/** How long one copy worker may run; the snapshot holder keeps the snapshot no longer than that. */
export const COPY_WORKER_TIMEOUT_SECONDS = 172_800;

/** A callback task must report within this time; it sends a heartbeat at least this often. */
const CALLBACK_TIMEOUT_SECONDS = 600;
const CALLBACK_HEARTBEAT_SECONDS = 300;

const lambdaServiceRetry = {
  ErrorEquals: ['Lambda.ServiceException', 'Lambda.AWSLambdaException', 'Lambda.SdkClientException', 'Lambda.TooManyRequestsException'],
  IntervalSeconds: 2,
  MaxAttempts: 4,
  BackoffRate: 2,
};

/**
 * A side out of reach (pgferry.Unreachable: a restart, a failover) is waited out: the step is
 * tried again after 5, 10, 20, 40, 80, 160 s, then every 300 s (MaxDelaySeconds), 300 attempts
 * spanning 88,515 s, more than the largest cdc.retryWindowMinutes (1440 min = 86,400 s). The
 * step itself ends the wait: it gets the time the state was entered (`stateEnteredTime`) and
 * fails with pgferry.ConnectionFailed once the spec's window has passed (lambdas/handler.ts).
 * History cost: each retry adds 3 events (TaskScheduled, TaskStarted, TaskFailed), so 36 an hour
 * of outage, at most about 900 for a 24-hour one.
 */
export const unreachableRetry = {
  ErrorEquals: [UNREACHABLE],
  IntervalSeconds: 5,
  MaxAttempts: 300,
  BackoffRate: 2,
  MaxDelaySeconds: 300,
};

/** Where a step's event carries `$$.State.EnteredTime`, the start of the state's retries (its outage window). */
export const STATE_ENTERED_TIME_FIELD = 'stateEnteredTime';

const ecsServiceRetry = {
  ErrorEquals: ['ECS.AmazonECSException', 'ECS.ServerException', 'ECS.LimitExceededException', 'ECS.ResourceInitializationError'],
  IntervalSeconds: 10,
  MaxAttempts: 3,
  BackoffRate: 2,
};

/** For tasks whose work is safe to redo: a failed (or killed) task runs again. */
const taskFailedRetry = { ErrorEquals: ['States.TaskFailed'], IntervalSeconds: 5, MaxAttempts: 3, BackoffRate: 2 };

function placeholder(name: string): string {
  return `\${${name}}`;
}

export interface LambdaStep {
  readonly comment: string;
  readonly payload: Readonly<Record<string, unknown>>;
  /** Fields of the function's result the state keeps, each under its own name. */
  readonly result?: readonly string[];
  readonly resultPath: string | null;
  readonly outputPath?: string;
  readonly timeoutSeconds: number;
  readonly next: string;
}

/**
 * A state that invokes the function `functionName` of lambdas/registry.ts, retrying Lambda's own
 * errors, and a side out of reach within the retry window.
 */
export function lambdaStep(functionName: string, step: LambdaStep): State {
  const fn = lambdaFunctions.find((def) => def.name === functionName && !def.operator);
  if (!fn) throw new Error(`state-machines: no workflow function '${functionName}' in lambdas/registry.ts`);
  return {
    Type: 'Task',
    Comment: step.comment,
    Resource: 'arn:aws:states:::lambda:invoke',
    Parameters: {
      FunctionName: placeholder(fn.arnPlaceholder),
      Payload: { ...step.payload, [`${STATE_ENTERED_TIME_FIELD}.$`]: '$$.State.EnteredTime' },
    },
    ...(step.result ? { ResultSelector: Object.fromEntries(step.result.map((field) => [`${field}.$`, `$.Payload.${field}`])) } : {}),
    ResultPath: step.resultPath,
    ...(step.outputPath ? { OutputPath: step.outputPath } : {}),
    TimeoutSeconds: step.timeoutSeconds,
    Retry: [lambdaServiceRetry, unreachableRetry],
    Next: step.next,
  };
}

/** A container environment value read from the state input (JSONPath or intrinsic function). */
export interface FromInput {
  readonly path: string;
}

export function fromInput(path: string): FromInput {
  return { path };
}

interface EcsTaskCommon {
  readonly comment: string;
  /** Beyond the migration's name and target (and the task token of a callback task). */
  readonly environment?: Readonly<Record<string, string | FromInput>>;
  readonly resultPath: string | null;
  /** Runs the task again when it fails: only for tasks whose work is safe to redo. */
  readonly retryFailedTask?: boolean;
  /** @default the end of its branch */
  readonly next?: string;
}

/**
 * `callback`: the task reports to the workflow itself (waitForTaskToken, with heartbeats, within
 * CALLBACK_TIMEOUT_SECONDS) and may run on after it has; `sync`: the state ends when the task stops.
 */
export type EcsTask = EcsTaskCommon & ({ readonly integration: 'callback' } | { readonly integration: 'sync'; readonly timeoutSeconds: number });

/** A state that runs the task `taskName` of tasks/registry.ts on Fargate, in the task subnets, without a public IP. */
export function ecsTask(taskName: string, task: EcsTask): State {
  const definition = fargateTasks.find((entry) => entry.name === taskName);
  if (!definition) throw new Error(`state-machines: no task '${taskName}' in tasks/registry.ts`);
  const callback = task.integration === 'callback';
  const environment: Record<string, string | FromInput> = {
    PGFERRY_MIGRATION: fromInput(specField('name')),
    PGFERRY_TARGET: fromInput(`States.JsonToString(${specField('target')})`),
    PGFERRY_RETRY_WINDOW_MINUTES: fromInput(`States.Format('{}', ${specField('retryWindowMinutes')})`),
    ...(callback ? { PGFERRY_TASK_TOKEN: fromInput('$$.Task.Token') } : {}),
    ...task.environment,
  };
  const splitList = (name: string) => `States.StringSplit('${placeholder(name)}', ',')`;
  return {
    Type: 'Task',
    Comment: task.comment,
    Resource: `arn:aws:states:::ecs:runTask.${callback ? 'waitForTaskToken' : 'sync'}`,
    Parameters: {
      Cluster: placeholder(infrastructurePlaceholders.cluster),
      TaskDefinition: placeholder(definition.taskDefinitionPlaceholder),
      LaunchType: 'FARGATE',
      NetworkConfiguration: {
        AwsvpcConfiguration: {
          'Subnets.$': splitList(infrastructurePlaceholders.subnets),
          'SecurityGroups.$': splitList(infrastructurePlaceholders.securityGroups),
          AssignPublicIp: 'DISABLED',
        },
      },
      Overrides: {
        ContainerOverrides: [
          {
            Name: definition.containerName,
            Environment: Object.entries(environment).map(([name, value]) =>
              typeof value === 'string' ? { Name: name, Value: value } : { Name: name, 'Value.$': value.path },
            ),
          },
        ],
      },
    },
    TimeoutSeconds: task.integration === 'callback' ? CALLBACK_TIMEOUT_SECONDS : task.timeoutSeconds,
    ...(callback ? { HeartbeatSeconds: CALLBACK_HEARTBEAT_SECONDS } : {}),
    ResultPath: task.resultPath,
    Retry: task.retryFailedTask ? [ecsServiceRetry, taskFailedRetry] : [ecsServiceRetry],
    ...(task.next ? { Next: task.next } : { End: true }),
  };
}

/** `state` with a catcher of every error, placed before its Next or End as the ASL has it. */
export function withCatch(state: State, catcher: { next: string; resultPath?: string }): State {
  const { Next, End, ...rest } = state;
  return {
    ...rest,
    Catch: [{ ErrorEquals: ['States.ALL'], ...(catcher.resultPath ? { ResultPath: catcher.resultPath } : {}), Next: catcher.next }],
    ...(Next !== undefined ? { Next } : {}),
    ...(End !== undefined ? { End } : {}),
  };
}

/** Every error goes to Cleanup, the error under `$.error`. */
export function withCleanupCatch(state: State): State {
  return withCatch(state, { next: 'Cleanup', resultPath: '$.error' });
}

/**
 * Starts a new execution of this state machine with the spec and `continues` (this execution's
 * id): it takes the run over as it is (engine/control takeOverRun). Retries the service's errors.
 */
export function continueAsNew(step: { comment: string; next: string }): State {
  return {
    Type: 'Task',
    Comment: step.comment,
    Resource: 'arn:aws:states:::states:startExecution',
    Parameters: { 'StateMachineArn.$': '$$.StateMachine.Id', Input: { 'spec.$': specPath, 'continues.$': '$$.Execution.Id' } },
    ResultPath: null,
    TimeoutSeconds: 60,
    Retry: [{ ErrorEquals: ['States.ALL'], IntervalSeconds: 5, MaxAttempts: 5, BackoffRate: 2 }],
    Next: step.next,
  };
}

/**
 * The workflow file as the local interpreter gets it: placeholders replaced with local
 * stand-ins, fields it would not honour taken out, and validated where that is worth its cost.
 */
import { readFile } from 'node:fs/promises';
import { lambdaFunctions, type LambdaFunctionDefinition } from '../../lambdas/registry.js';
import { fargateTasks, type FargateTaskDefinition } from '../../tasks/registry.js';
import type { StateMachineDefinition } from './interpreter.js';
import { workflowFile } from './paths.js';

export class WorkflowDefinitionError extends Error {}

/** The Lambdas and tasks a definition's placeholders may name. */
export interface Wiring {
  lambdas: readonly LambdaFunctionDefinition[];
  tasks: readonly FargateTaskDefinition[];
}

export interface DefinitionOptions {
  definitionFile?: string;
  lambdas?: readonly LambdaFunctionDefinition[];
  tasks?: readonly FargateTaskDefinition[];
}

const LOCAL_ACCOUNT = 'arn:aws:lambda:local:000000000000';
export const localFunctionArn = (fn: LambdaFunctionDefinition) => `${LOCAL_ACCOUNT}:function:pgferry-${fn.name}`;
export const localTaskDefinitionArn = (task: FargateTaskDefinition) => `arn:aws:ecs:local:000000000000:task-definition/pgferry-${task.name}:1`;

/** Infrastructure placeholders that have no meaning locally. */
const localInfrastructure: Record<string, string> = {
  ClusterArn: 'arn:aws:ecs:local:000000000000:cluster/pgferry',
  TaskSubnetIds: 'subnet-local',
  TaskSecurityGroupIds: 'sg-local',
};

/** Replaces every `${X}` placeholder with its local value; an unknown placeholder is an error. */
export function substituteLocally(text: string, wiring: Wiring): string {
  const values = new Map<string, string>(Object.entries(localInfrastructure));
  for (const fn of wiring.lambdas) values.set(fn.arnPlaceholder, localFunctionArn(fn));
  for (const task of wiring.tasks) values.set(task.taskDefinitionPlaceholder, localTaskDefinitionArn(task));
  return text.replace(/\$\{([A-Za-z0-9_]+)\}/g, (_, name: string) => {
    const value = values.get(name);
    if (value === undefined) throw new WorkflowDefinitionError(`The workflow uses the placeholder \${${name}}, which names no Lambda or task.`);
    return value;
  });
}

export type AnyState = Record<string, unknown> & { Type: string; Resource?: string; Parameters?: Record<string, unknown> };
export type StateMap = Record<string, AnyState>;

/** Every Task state, including those inside Map and Parallel states. */
export function* taskStates(states: StateMap): Generator<[string, AnyState]> {
  for (const [name, state] of Object.entries(states)) {
    if (state.Type === 'Task') yield [name, state];
    const nested = (state.ItemProcessor ?? state.Iterator) as { States: StateMap } | undefined;
    if (nested) yield* taskStates(nested.States);
    for (const branch of (state.Branches as { States: StateMap }[] | undefined) ?? []) yield* taskStates(branch.States);
  }
}

/** The item of `items` whose local ARN `arn` is; a definition error if there is none. */
export function wiredBy<T>(items: readonly T[], arnOf: (item: T) => string, arn: unknown, what: string, stateName: string): T {
  const item = items.find((candidate) => arnOf(candidate) === arn);
  if (!item) throw new WorkflowDefinitionError(`State ${stateName} names ${what} ${String(arn)}, which the local runner does not know.`);
  return item;
}

/**
 * aws-local-stepfunctions 3.0 does not implement HeartbeatSeconds (its validator accepts the
 * field, its interpreter never enforces it). The callback tasks heartbeat to Step Functions on
 * AWS only; locally they report over IPC and a dead child process fails its state at once. So
 * the interpreter gets the definition without the field, rather than one that promises a
 * heartbeat timeout it would not apply.
 */
function withoutHeartbeats(states: StateMap): void {
  for (const [, state] of taskStates(states)) {
    delete state.HeartbeatSeconds;
    delete state.HeartbeatSecondsPath;
  }
}

export async function loadLocalDefinition(options: DefinitionOptions = {}) {
  const wiring: Wiring = { lambdas: options.lambdas ?? lambdaFunctions, tasks: options.tasks ?? fargateTasks };
  const text = await readFile(options.definitionFile ?? workflowFile, 'utf8');
  const definition = JSON.parse(substituteLocally(text, wiring)) as StateMachineDefinition;
  withoutHeartbeats(definition.States as unknown as StateMap);
  return { definition, wiring };
}

/**
 * How the interpreter validates the definition: a file given with `definitionFile` is checked
 * at every run; the shipped workflow is checked by its test (test/unit/runner.test.ts) with the
 * same validator, which costs about 150 ms of schema compiling that every run would pay.
 */
export function workflowValidation(options: Pick<DefinitionOptions, 'definitionFile'> = {}) {
  return options.definitionFile ? { checkArn: false } : { noValidate: true };
}

/**
 * The Step Functions state machine of PgferryMigration: the checked-in workflow
 * (state-machines/migration.asl.json) with its `${…}` placeholders substituted, its logs, and
 * exactly the permissions the definition needs (DefinitionBody.fromString derives none).
 */
import { readFileSync } from 'node:fs';
import { Annotations, ArnFormat, Fn, Stack } from 'aws-cdk-lib';
import type * as ec2 from 'aws-cdk-lib/aws-ec2';
import type * as ecs from 'aws-cdk-lib/aws-ecs';
import * as iam from 'aws-cdk-lib/aws-iam';
import type * as lambda from 'aws-cdk-lib/aws-lambda';
import * as sfn from 'aws-cdk-lib/aws-stepfunctions';
import type { Construct } from 'constructs';
import { type LambdaFunctionDefinition, lambdaFunctions } from '../lambdas/registry.js';
import { infrastructurePlaceholders } from '../state-machines/steps.js';
import { fargateTasks } from '../tasks/registry.js';
import type { MigrationEncryption } from './encryption.js';
import { acknowledge, acknowledgeWildcardResources } from './nag.js';

/** The rule Step Functions manages in the account to follow `ecs:runTask.sync` tasks. */
export const ecsSyncRuleName = 'StepFunctionsGetEventsForECSTaskRule';

/** Names inside `${…}` in an ASL text, each once, in order of first use. */
export function definitionPlaceholders(text: string): string[] {
  return [...new Set(Array.from(text.matchAll(/\$\{([^}]*)\}/g), (m) => m[1]!))];
}

/**
 * Placeholders naming the task definition of an `ecs:runTask.waitForTaskToken` state: those
 * tasks report to the workflow themselves (SendTaskSuccess/Failure/Heartbeat).
 */
export function callbackTaskPlaceholders(definition: unknown): string[] {
  const found = new Set<string>();
  const visit = (node: unknown): void => {
    if (Array.isArray(node)) return node.forEach(visit);
    if (node === null || typeof node !== 'object') return;
    const state = node as Record<string, unknown>;
    const parameters = state.Parameters as Record<string, unknown> | undefined;
    if (
      state.Type === 'Task' &&
      typeof state.Resource === 'string' &&
      /^arn:aws:states:::ecs:runTask\.waitForTaskToken$/.test(state.Resource) &&
      typeof parameters?.TaskDefinition === 'string'
    ) {
      const placeholder = /^\$\{([^}]*)\}$/.exec(parameters.TaskDefinition)?.[1];
      if (placeholder) found.add(placeholder);
    }
    Object.values(state).forEach(visit);
  };
  visit(definition);
  return [...found];
}

export interface MigrationStateMachineProps {
  readonly definitionPath: string;
  readonly stateMachineName?: string;
  /** Names the state machine's log group. */
  readonly serviceName: string;
  readonly encryption: MigrationEncryption;
  /** Every function, by registry name. */
  readonly functions: Readonly<Record<string, lambda.IFunction>>;
  /** The functions the workflow invokes (the operator's is not one of them). */
  readonly workflowFunctions: readonly LambdaFunctionDefinition[];
  readonly taskDefinitions: Readonly<Record<string, ecs.TaskDefinition>>;
  readonly cluster: ecs.ICluster;
  readonly taskSubnets: ec2.SelectedSubnets;
  readonly taskSecurityGroup: ec2.ISecurityGroup;
}

/**
 * Builds into the scope it is given (no construct level of its own, so the logical IDs stay
 * those of PgferryMigration's direct children): `StateMachineLogs` and `StateMachine`.
 */
export class MigrationStateMachine {
  readonly stateMachine: sfn.StateMachine;

  constructor(scope: Construct, private readonly props: MigrationStateMachineProps) {
    const definition = readFileSync(props.definitionPath, 'utf8');
    this.stateMachine = new sfn.StateMachine(scope, 'StateMachine', {
      stateMachineName: props.stateMachineName,
      stateMachineType: sfn.StateMachineType.STANDARD,
      definitionBody: sfn.DefinitionBody.fromString(definition),
      definitionSubstitutions: this.substitutions(definition),
      tracingEnabled: true,
      // Every event (state entered/exited, task scheduled/failed, …) for the audit trail, but not
      // the data: inputs and outputs (the spec, plans, comparison results that may name rows)
      // are in the execution history already, with its own access control; copying them into
      // the logs for the whole CDC loop would add a second copy and most of the log volume.
      logs: {
        // Under /aws/vendedlogs/ the log delivery needs no CloudWatch Logs resource policy per log
        // group (the account's policies are limited to 5,120 characters in all).
        destination: props.encryption.logGroup('StateMachineLogs', `/aws/vendedlogs/states/${props.serviceName}`),
        level: sfn.LogLevel.ALL,
        includeExecutionData: false,
      },
    });
    acknowledge(this.stateMachine.role, 'IAM5[Resource::*]', 'Log delivery (logs:CreateLogDelivery, …) and X-Ray (xray:PutTraceSegments, …) support no resource-level permissions.');
    this.grantInvokeFunctions();
    this.grantRunTasks();
    this.grantTaskResponses(definition);
    if (definition.includes('arn:aws:states:::states:startExecution')) this.grantContinueAsNew(scope);
  }

  /**
   * ContinueAsNew starts an execution of this state machine itself. A policy of its own: the
   * state machine depends on its role's default policy, which therefore cannot name it.
   */
  private grantContinueAsNew(scope: Construct): void {
    new iam.Policy(scope, 'ContinueAsNewPolicy', {
      roles: [this.stateMachine.role],
      statements: [new iam.PolicyStatement({ actions: ['states:StartExecution'], resources: [this.stateMachine.stateMachineArn] })],
    });
  }

  /**
   * The value of every placeholder `definition` uses; warns about a function or task the
   * definition never names, and refuses a placeholder nothing provides.
   */
  private substitutions(definition: string): Record<string, string> {
    const { definitionPath, functions, taskDefinitions } = this.props;
    const placeholders = definitionPlaceholders(definition);
    const substitutions: Record<string, string> = {
      [infrastructurePlaceholders.cluster]: this.props.cluster.clusterArn,
      [infrastructurePlaceholders.subnets]: Fn.join(',', this.props.taskSubnets.subnetIds),
      [infrastructurePlaceholders.securityGroups]: this.props.taskSecurityGroup.securityGroupId,
    };
    for (const def of this.props.workflowFunctions) {
      substitutions[def.arnPlaceholder] = functions[def.name]!.functionArn;
      if (!placeholders.includes(def.arnPlaceholder)) {
        Annotations.of(functions[def.name]!).addWarningV2(
          'pgferry:unusedFunction',
          `${definitionPath} never uses \${${def.arnPlaceholder}}: the function is deployed but not invoked.`,
        );
      }
    }
    for (const task of fargateTasks) {
      substitutions[task.taskDefinitionPlaceholder] = taskDefinitions[task.name]!.taskDefinitionArn;
      if (!placeholders.includes(task.taskDefinitionPlaceholder)) {
        Annotations.of(taskDefinitions[task.name]!).addWarningV2(
          'pgferry:unusedTask',
          `${definitionPath} never uses \${${task.taskDefinitionPlaceholder}}: the task definition is deployed but never run.`,
        );
      }
    }

    const unsubstituted = placeholders.filter((name) => !Object.hasOwn(substitutions, name));
    if (unsubstituted.length > 0) {
      const operators = unsubstituted.filter((name) => lambdaFunctions.some((def) => def.operator && def.arnPlaceholder === name));
      throw new Error(
        `PgferryMigration: ${definitionPath} uses ${unsubstituted.map((name) => `\${${name}}`).join(', ')}, ` +
          'which no entry of lambdas/registry.ts (arnPlaceholder) or tasks/registry.ts (taskDefinitionPlaceholder) ' +
          `provides, nor the construct (${Object.values(infrastructurePlaceholders).join(', ')})` +
          (operators.length > 0 ? `; ${operators.join(', ')} names an operator function, which the CLI invokes and the workflow never does.` : '.'),
      );
    }
    return substitutions;
  }

  private grantInvokeFunctions(): void {
    const invoked = this.props.workflowFunctions.map((def) => this.props.functions[def.name]!);
    if (invoked.length === 0) return;
    // The ASL names the unqualified ARNs: no version or alias is ever invoked.
    this.stateMachine.addToRolePolicy(
      new iam.PolicyStatement({ actions: ['lambda:InvokeFunction'], resources: invoked.map((fn) => fn.functionArn) }),
    );
  }

  private grantRunTasks(): void {
    const taskDefinitionList = Object.values(this.props.taskDefinitions);
    if (taskDefinitionList.length === 0) return;
    const stack = Stack.of(this.stateMachine);
    const role = this.stateMachine.role;
    const inCluster = { ArnEquals: { 'ecs:cluster': this.props.cluster.clusterArn } };
    const runTask = new iam.PolicyStatement({
      actions: ['ecs:RunTask'],
      // Any revision of exactly these families (the substituted ARN names a revision).
      resources: taskDefinitionList.map((taskDefinition) =>
        stack.formatArn({
          service: 'ecs',
          resource: 'task-definition',
          resourceName: `${taskDefinition.family}:*`,
          arnFormat: ArnFormat.SLASH_RESOURCE_NAME,
        }),
      ),
      conditions: inCluster,
    });
    this.stateMachine.addToRolePolicy(runTask);
    acknowledgeWildcardResources(
      role,
      runTask,
      "Any revision of pgferry's own task definition families: executions started before an update run the revision their definition names.",
    );
    // `.sync` follows and, on timeout or abort, stops the task. Task ARNs are not known in
    // advance: any task of this account and region, in this cluster only.
    const followTasks = new iam.PolicyStatement({
      actions: ['ecs:StopTask', 'ecs:DescribeTasks'],
      resources: [stack.formatArn({ service: 'ecs', resource: 'task', resourceName: '*', arnFormat: ArnFormat.SLASH_RESOURCE_NAME })],
      conditions: inCluster,
    });
    this.stateMachine.addToRolePolicy(followTasks);
    acknowledgeWildcardResources(role, followTasks, 'Task ARNs are generated at run time; the condition limits the statement to tasks of this cluster.');
    const passedRoles = taskDefinitionList.flatMap((taskDefinition) => [taskDefinition.taskRole, taskDefinition.executionRole]);
    this.stateMachine.addToRolePolicy(
      new iam.PolicyStatement({
        actions: ['iam:PassRole'],
        resources: [...new Set(passedRoles.flatMap((passed) => (passed ? [passed.roleArn] : [])))],
        conditions: { StringEquals: { 'iam:PassedToService': 'ecs-tasks.amazonaws.com' } },
      }),
    );
    this.stateMachine.addToRolePolicy(
      new iam.PolicyStatement({
        actions: ['events:PutTargets', 'events:PutRule', 'events:DescribeRule'],
        resources: [
          stack.formatArn({ service: 'events', resource: 'rule', resourceName: ecsSyncRuleName, arnFormat: ArnFormat.SLASH_RESOURCE_NAME }),
        ],
      }),
    );
  }

  /**
   * The tasks started with `.waitForTaskToken` report back themselves. Step Functions
   * authorizes SendTask* against the ARN of the state machine that issued the token, so the
   * grant names this state machine only. That is no dependency cycle: the task role's policy
   * is a resource of its own (AWS::IAM::Policy) that needs the state machine, while the
   * state machine needs only the task definition and its role, never that policy; the
   * policy exists before any execution can start, since the stack finishes deploying first.
   */
  private grantTaskResponses(definition: string): void {
    const callbackPlaceholders = callbackTaskPlaceholders(JSON.parse(definition));
    for (const task of fargateTasks) {
      if (callbackPlaceholders.includes(task.taskDefinitionPlaceholder)) {
        this.stateMachine.grantTaskResponse(this.props.taskDefinitions[task.name]!.taskRole);
      }
    }
  }
}

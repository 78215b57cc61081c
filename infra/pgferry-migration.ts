import { readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Annotations, ArnFormat, Duration, Fn, Stack } from 'aws-cdk-lib';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import { DockerImageAsset, Platform } from 'aws-cdk-lib/aws-ecr-assets';
import * as ecs from 'aws-cdk-lib/aws-ecs';
import * as events from 'aws-cdk-lib/aws-events';
import * as targets from 'aws-cdk-lib/aws-events-targets';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import { NodejsFunction, OutputFormat } from 'aws-cdk-lib/aws-lambda-nodejs';
import * as logs from 'aws-cdk-lib/aws-logs';
import * as sfn from 'aws-cdk-lib/aws-stepfunctions';
import { Construct } from 'constructs';
import { lambdaFunctions } from '../lambdas/registry.js';
import { fargateTasks } from '../tasks/registry.js';
import { taskBundlePath } from './task-image.js';

export const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), '..');
export const migrationDefinitionPath = join(repoRoot, 'state-machines', 'migration.asl.json');

/** Placeholders of the workflow that name infrastructure rather than a function or a task definition. */
export const infrastructurePlaceholders = {
  cluster: 'ClusterArn',
  /** Comma-separated; the ASL splits it with States.StringSplit. */
  subnets: 'TaskSubnetIds',
  /** Comma-separated; the ASL splits it with States.StringSplit. */
  securityGroups: 'TaskSecurityGroupIds',
} as const;

/** The rule Step Functions manages in the account to follow `ecs:runTask.sync` tasks. */
export const ecsSyncRuleName = 'StepFunctionsGetEventsForECSTaskRule';

/** Fargate size of a task: `cpu` in CPU units (1024 = 1 vCPU), a valid Fargate combination. */
export interface FargateTaskSize {
  readonly cpu: number;
  readonly memoryLimitMiB: number;
}

/** Copy workers move the data; the other tasks mostly wait on the databases. */
export const defaultTaskSizes: Readonly<Record<string, FargateTaskSize>> = {
  Copy: { cpu: 1024, memoryLimitMiB: 2048 },
};
const defaultTaskSize: FargateTaskSize = { cpu: 512, memoryLimitMiB: 1024 };

export interface PgferryMigrationProps {
  /**
   * The VPC of the functions that connect to the databases and of the Fargate tasks.
   * @default a new VPC over 2 AZs: public subnets, and private subnets with egress through one NAT gateway
   */
  readonly vpc?: ec2.IVpc;
  /**
   * Subnets of the database functions and the Fargate tasks (which get no public IP).
   * @default private subnets with egress
   */
  readonly vpcSubnets?: ec2.SubnetSelection;
  /** Secrets Manager secrets (source/target credentials) the database functions and the tasks may read. */
  readonly secretArns?: readonly string[];
  readonly stateMachineName?: string;
  /** Retention of the functions', the tasks' and the state machine's log groups. @default one month */
  readonly logRetention?: logs.RetentionDays;
  /**
   * Task definitions to use instead of the generated ones, by task name (tasks/registry.ts).
   * Each must be Fargate-compatible with a container of the registry's name (`pgferry`).
   * @default one generated per task, all from the image built by the repository's Dockerfile
   */
  readonly taskDefinitions?: Readonly<Partial<Record<string, ecs.TaskDefinition>>>;
  /** CPU and memory of the generated task definitions, by task name. @default Copy: 1 vCPU/2 GiB, others 0.5 vCPU/1 GiB */
  readonly taskSizes?: Readonly<Partial<Record<string, FargateTaskSize>>>;
  /** The workflow definition. @default state-machines/migration.asl.json */
  readonly definitionPath?: string;
}

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

/**
 * The pgferry workflow: one Lambda per entry of lambdas/registry.ts, one Fargate task
 * definition per entry of tasks/registry.ts (an ECS cluster, one shared container image), and
 * the Step Functions state machine of state-machines/migration.asl.json, its placeholders
 * substituted.
 */
export class PgferryMigration extends Construct {
  readonly stateMachine: sfn.StateMachine;
  /** Runs Cleanup for executions that were stopped or timed out (undefined if the registry has no Cleanup function). */
  readonly stoppedExecutionRule?: events.Rule;
  readonly functions: Readonly<Record<string, NodejsFunction>>;
  readonly vpc: ec2.IVpc;
  readonly cluster: ecs.Cluster;
  /** The task definition of each task of tasks/registry.ts, by task name. */
  readonly taskDefinitions: Readonly<Record<string, ecs.TaskDefinition>>;
  /** The image of the generated task definitions; undefined when every task definition was given. */
  readonly taskImage?: DockerImageAsset;
  /** Shared by the functions that connect to the databases: allow it on the databases' security groups. */
  readonly databaseClientSecurityGroup: ec2.SecurityGroup;
  /** Shared by the Fargate tasks: allow it on the databases' security groups. */
  readonly taskSecurityGroup: ec2.SecurityGroup;

  constructor(scope: Construct, id: string, props: PgferryMigrationProps = {}) {
    super(scope, id);
    const stack = Stack.of(this);
    const retention = props.logRetention ?? logs.RetentionDays.ONE_MONTH;
    const secretArns = props.secretArns ?? [];
    const secretStatement = () =>
      new iam.PolicyStatement({ actions: ['secretsmanager:GetSecretValue'], resources: [...secretArns] });

    for (const name of [...Object.keys(props.taskDefinitions ?? {}), ...Object.keys(props.taskSizes ?? {})]) {
      if (!fargateTasks.some((task) => task.name === name)) {
        throw new Error(
          `PgferryMigration: '${name}' is not a task of tasks/registry.ts (${fargateTasks.map((task) => task.name).join(', ')}).`,
        );
      }
    }

    this.vpc =
      props.vpc ??
      new ec2.Vpc(this, 'Vpc', {
        maxAzs: 2,
        natGateways: 1,
        subnetConfiguration: [
          { name: 'Public', subnetType: ec2.SubnetType.PUBLIC, cidrMask: 24 },
          { name: 'Private', subnetType: ec2.SubnetType.PRIVATE_WITH_EGRESS, cidrMask: 24 },
        ],
      });
    const vpcSubnets = props.vpcSubnets ?? { subnetType: ec2.SubnetType.PRIVATE_WITH_EGRESS };
    // Fargate tasks run with awsvpc networking in these subnets and never get a public IP (the
    // ASL says AssignPublicIp DISABLED), so the subnets must reach ECR, CloudWatch Logs and
    // Secrets Manager through a NAT gateway or VPC endpoints.
    const taskSubnets = this.vpc.selectSubnets(vpcSubnets);
    if (taskSubnets.hasPublic) {
      throw new Error('PgferryMigration: vpcSubnets selects public subnets; the functions and tasks run without a public IP, use private subnets.');
    }

    this.databaseClientSecurityGroup = new ec2.SecurityGroup(this, 'DatabaseClientSecurityGroup', {
      vpc: this.vpc,
      description: 'pgferry functions that connect to the source and target databases',
      allowAllOutbound: true,
    });

    const functions: Record<string, NodejsFunction> = {};
    for (const def of lambdaFunctions) {
      const fn = new NodejsFunction(this, def.name, {
        entry: join(repoRoot, def.entry),
        handler: 'handler',
        runtime: lambda.Runtime.NODEJS_22_X,
        architecture: lambda.Architecture.ARM_64,
        timeout: Duration.seconds(def.timeoutSeconds),
        memorySize: def.memoryMb,
        projectRoot: repoRoot,
        depsLockFilePath: join(repoRoot, 'package-lock.json'),
        // Source maps are only applied to stack traces with this flag.
        environment: { NODE_OPTIONS: '--enable-source-maps' },
        logGroup: new logs.LogGroup(this, `${def.name}Logs`, { retention }),
        bundling: {
          format: OutputFormat.ESM,
          target: 'node22',
          minify: true,
          sourceMap: true,
          mainFields: ['module', 'main'],
          // esbuild's ESM output has no `require` for the CommonJS dependencies it bundles
          // (the same banner as infra/bundle-tasks.ts).
          banner: "import { createRequire } from 'module'; const require = createRequire(import.meta.url);",
          externalModules: ['@aws-sdk/*'],
          forceDockerBundling: false,
        },
        ...(def.needsDatabase
          ? { vpc: this.vpc, vpcSubnets, securityGroups: [this.databaseClientSecurityGroup] }
          : {}),
      });
      if (def.needsDatabase && secretArns.length > 0) fn.addToRolePolicy(secretStatement());
      functions[def.name] = fn;
    }
    this.functions = functions;

    this.cluster = new ecs.Cluster(this, 'Cluster', {
      vpc: this.vpc,
      containerInsightsV2: ecs.ContainerInsights.ENABLED,
    });
    this.taskSecurityGroup = new ec2.SecurityGroup(this, 'TaskSecurityGroup', {
      vpc: this.vpc,
      description: 'pgferry Fargate tasks that connect to the source and target databases',
      allowAllOutbound: true,
    });

    const taskDefinitions: Record<string, ecs.TaskDefinition> = {};
    let image: ecs.ContainerImage | undefined;
    let executionRole: iam.Role | undefined;
    for (const task of fargateTasks) {
      const given = props.taskDefinitions?.[task.name];
      if (given) {
        if (!given.isFargateCompatible || !given.findContainer(task.containerName)) {
          throw new Error(
            `PgferryMigration: the task definition given for '${task.name}' must be Fargate-compatible and have a container named '${task.containerName}'.`,
          );
        }
        taskDefinitions[task.name] = given;
        continue;
      }
      if (!image) {
        // One image for every task: the Dockerfile bundles all entries, the command picks one.
        // Synth only stages the build context (.dockerignore applies); Docker runs at deploy.
        this.taskImage = new DockerImageAsset(this, 'TaskImage', { directory: repoRoot, platform: Platform.LINUX_ARM64 });
        image = ecs.ContainerImage.fromDockerImageAsset(this.taskImage);
        // Pulls the image and writes the logs, for every generated task definition.
        executionRole = new iam.Role(this, 'TaskExecutionRole', {
          assumedBy: new iam.ServicePrincipal('ecs-tasks.amazonaws.com'),
          description: 'pgferry Fargate tasks: image pull and logs',
        });
      }
      const size = props.taskSizes?.[task.name] ?? defaultTaskSizes[task.name] ?? defaultTaskSize;
      const taskDefinition = new ecs.FargateTaskDefinition(this, `${task.name}TaskDefinition`, {
        cpu: size.cpu,
        memoryLimitMiB: size.memoryLimitMiB,
        runtimePlatform: {
          cpuArchitecture: ecs.CpuArchitecture.ARM64,
          operatingSystemFamily: ecs.OperatingSystemFamily.LINUX,
        },
        executionRole,
      });
      taskDefinition.addContainer(task.containerName, {
        containerName: task.containerName,
        image,
        command: [taskBundlePath(task)],
        essential: true,
        // The tasks write nothing to disk.
        readonlyRootFilesystem: true,
        logging: ecs.LogDrivers.awsLogs({
          streamPrefix: 'pgferry',
          logGroup: new logs.LogGroup(this, `${task.name}TaskLogs`, { retention }),
        }),
      });
      taskDefinitions[task.name] = taskDefinition;
    }
    this.taskDefinitions = taskDefinitions;
    for (const taskDefinition of Object.values(taskDefinitions)) {
      if (secretArns.length > 0) taskDefinition.addToTaskRolePolicy(secretStatement());
    }

    const definitionPath = props.definitionPath ?? migrationDefinitionPath;
    const definition = readFileSync(definitionPath, 'utf8');
    const placeholders = definitionPlaceholders(definition);

    const substitutions: Record<string, string> = {
      [infrastructurePlaceholders.cluster]: this.cluster.clusterArn,
      [infrastructurePlaceholders.subnets]: Fn.join(',', taskSubnets.subnetIds),
      [infrastructurePlaceholders.securityGroups]: this.taskSecurityGroup.securityGroupId,
    };
    for (const def of lambdaFunctions) {
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
      throw new Error(
        `PgferryMigration: ${definitionPath} uses ${unsubstituted.map((name) => `\${${name}}`).join(', ')}, ` +
          'which no entry of lambdas/registry.ts (arnPlaceholder) or tasks/registry.ts (taskDefinitionPlaceholder) ' +
          `provides, nor the construct (${Object.values(infrastructurePlaceholders).join(', ')}).`,
      );
    }

    this.stateMachine = new sfn.StateMachine(this, 'StateMachine', {
      stateMachineName: props.stateMachineName,
      stateMachineType: sfn.StateMachineType.STANDARD,
      definitionBody: sfn.DefinitionBody.fromString(definition),
      definitionSubstitutions: substitutions,
      tracingEnabled: true,
      logs: {
        destination: new logs.LogGroup(this, 'StateMachineLogs', { retention }),
        level: sfn.LogLevel.ERROR,
        includeExecutionData: true,
      },
    });

    // A stopped or timed-out execution runs no state, not even Cleanup: this rule runs it, so
    // no replication slot, publication or cutover fence outlives the run.
    const cleanup = functions.Cleanup;
    if (cleanup) {
      this.stoppedExecutionRule = new events.Rule(this, 'CleanupStoppedExecutions', {
        description: 'pgferry: runs Cleanup for executions that were stopped or timed out',
        eventPattern: {
          source: ['aws.states'],
          detailType: ['Step Functions Execution Status Change'],
          detail: { status: ['ABORTED', 'TIMED_OUT'], stateMachineArn: [this.stateMachine.stateMachineArn] },
        },
        targets: [new targets.LambdaFunction(cleanup, { retryAttempts: 4, maxEventAge: Duration.hours(2) })],
      });
    }

    // DefinitionBody.fromString derives no permissions from the definition.
    const functionList = Object.values(functions);
    if (functionList.length > 0) {
      this.stateMachine.addToRolePolicy(
        new iam.PolicyStatement({
          actions: ['lambda:InvokeFunction'],
          resources: functionList.flatMap((fn) => [fn.functionArn, `${fn.functionArn}:*`]),
        }),
      );
    }
    const taskDefinitionList = Object.values(taskDefinitions);
    if (taskDefinitionList.length > 0) {
      const inCluster = { ArnEquals: { 'ecs:cluster': this.cluster.clusterArn } };
      this.stateMachine.addToRolePolicy(
        new iam.PolicyStatement({
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
        }),
      );
      // `.sync` follows and, on timeout or abort, stops the task. Task ARNs are not known in
      // advance: any task of this account and region, in this cluster only.
      this.stateMachine.addToRolePolicy(
        new iam.PolicyStatement({
          actions: ['ecs:StopTask', 'ecs:DescribeTasks'],
          resources: [stack.formatArn({ service: 'ecs', resource: 'task', resourceName: '*', arnFormat: ArnFormat.SLASH_RESOURCE_NAME })],
          conditions: inCluster,
        }),
      );
      const passedRoles = taskDefinitionList.flatMap((taskDefinition) => [taskDefinition.taskRole, taskDefinition.executionRole]);
      this.stateMachine.addToRolePolicy(
        new iam.PolicyStatement({
          actions: ['iam:PassRole'],
          resources: [...new Set(passedRoles.flatMap((role) => (role ? [role.roleArn] : [])))],
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

    // The tasks started with `.waitForTaskToken` report back themselves. Step Functions
    // authorizes SendTask* against the ARN of the state machine that issued the token, so the
    // grant names this state machine only. That is no dependency cycle: the task role's policy
    // is a resource of its own (AWS::IAM::Policy) that needs the state machine, while the
    // state machine needs only the task definition and its role, never that policy; the
    // policy exists before any execution can start, since the stack finishes deploying first.
    const callbackPlaceholders = callbackTaskPlaceholders(JSON.parse(definition));
    for (const task of fargateTasks) {
      if (callbackPlaceholders.includes(task.taskDefinitionPlaceholder)) {
        this.stateMachine.grantTaskResponse(taskDefinitions[task.name]!.taskRole);
      }
    }
  }
}

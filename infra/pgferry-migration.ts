import { readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Annotations, ArnFormat, Duration, Fn, Stack, Tags, Token } from 'aws-cdk-lib';
import type * as cloudwatch from 'aws-cdk-lib/aws-cloudwatch';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import { DockerImageAsset, Platform } from 'aws-cdk-lib/aws-ecr-assets';
import * as ecs from 'aws-cdk-lib/aws-ecs';
import * as events from 'aws-cdk-lib/aws-events';
import * as targets from 'aws-cdk-lib/aws-events-targets';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as kms from 'aws-cdk-lib/aws-kms';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import * as destinations from 'aws-cdk-lib/aws-lambda-destinations';
import { NodejsFunction, OutputFormat } from 'aws-cdk-lib/aws-lambda-nodejs';
import * as logs from 'aws-cdk-lib/aws-logs';
import * as scheduler from 'aws-cdk-lib/aws-scheduler';
import * as sns from 'aws-cdk-lib/aws-sns';
import * as subscriptions from 'aws-cdk-lib/aws-sns-subscriptions';
import * as sqs from 'aws-cdk-lib/aws-sqs';
import * as sfn from 'aws-cdk-lib/aws-stepfunctions';
import { Construct } from 'constructs';
import { lambdaFunctions } from '../lambdas/registry.js';
import { metrics, stateMachineTags, startMigrationEvent } from '../platform/aws/deployment.js';
import { fargateTasks } from '../tasks/registry.js';
import { PgferryMonitoring } from './monitoring.js';
import { deployedBundleOptions } from './esbuild-recipe.js';
import { acknowledge, acknowledgeWildcardResources } from './nag.js';
import { addMigrationEndpoints, createMigrationVpc, privateSubnetGroupName } from './network.js';
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
   * The VPC of the functions that connect to the databases and of the Fargate tasks. Its
   * subnets must reach Secrets Manager, ECR (+ S3), CloudWatch Logs and Step Functions, through
   * a NAT gateway or VPC endpoints, and the databases.
   * @default a new VPC over 2 AZs: private subnets, flow logs, `natGateways` NAT gateways and VPC endpoints
   */
  readonly vpc?: ec2.IVpc;
  /**
   * Subnets of the database functions and the Fargate tasks (which get no public IP).
   * @default the private subnets of the new VPC; of a given VPC, its private subnets with egress
   */
  readonly vpcSubnets?: ec2.SubnetSelection;
  /**
   * NAT gateways of the new VPC (only without `vpc`): sources outside AWS need egress to the
   * internet; 0 makes the subnets isolated (databases in the VPC or reached through peering).
   * @default 1
   */
  readonly natGateways?: number;
  /**
   * Interface endpoints (Secrets Manager, ECR API and Docker, CloudWatch Logs, Step Functions) and
   * an S3 gateway endpoint in the new VPC (only without `vpc`), so AWS API traffic stays in the VPC.
   * @default true
   */
  readonly vpcEndpoints?: boolean;
  /** Security group of the database functions. @default a new one, allowing all outbound traffic */
  readonly databaseClientSecurityGroup?: ec2.ISecurityGroup;
  /** Security group of the Fargate tasks. @default a new one, allowing all outbound traffic */
  readonly taskSecurityGroup?: ec2.ISecurityGroup;
  /**
   * Secrets Manager secrets (source/target credentials) the database functions and the tasks may
   * read: complete ARNs, or partial ones (without the 6-character suffix), which are wildcarded.
   */
  readonly secretArns?: readonly string[];
  /**
   * Customer-managed KMS keys that encrypt those secrets: the same roles may decrypt with them,
   * through Secrets Manager only. @default none (secrets under the AWS managed key need no grant)
   */
  readonly secretKeyArns?: readonly string[];
  readonly stateMachineName?: string;
  /** Retention of the functions', the tasks', the state machine's and the flow logs' log groups. @default one month */
  readonly logRetention?: logs.RetentionDays;
  /**
   * Task definitions to use instead of the generated ones, by task name (tasks/registry.ts).
   * Each must be Fargate-compatible with a container of the registry's name (`pgferry`); the
   * construct adds the metrics environment (POWERTOOLS_SERVICE_NAME, …) to that container.
   * @default one generated per task, all from the image built by the repository's Dockerfile
   */
  readonly taskDefinitions?: Readonly<Partial<Record<string, ecs.TaskDefinition>>>;
  /** CPU and memory of the generated task definitions, by task name. @default Copy: 1 vCPU/2 GiB, others 0.5 vCPU/1 GiB */
  readonly taskSizes?: Readonly<Partial<Record<string, FargateTaskSize>>>;
  /** The workflow definition. @default state-machines/migration.asl.json */
  readonly definitionPath?: string;
  /**
   * Where the alarms notify (execution failed or timed out, replication lag over the spec's
   * threshold, function errors, undelivered events).
   * @default a new topic, encrypted with the deployment's KMS key
   */
  readonly alarmTopic?: sns.ITopic;
  /** E-mail addresses subscribed to the alarm topic (each must confirm the subscription). @default none */
  readonly alarmEmails?: readonly string[];
  /**
   * The deployment's name in the metrics: POWERTOOLS_SERVICE_NAME of every function and task,
   * the `service` dimension the lag alarm and the dashboard read.
   * @default `pgferry-` + 8 hex digits unique to this construct's path
   */
  readonly serviceName?: string;
}

/**
 * A secret ARN as IAM matches it: a complete ARN ends in "-" and six random characters that
 * Secrets Manager adds; a partial one (the secret's name only) matches nothing in a policy
 * unless those are wildcarded.
 */
export function secretPolicyArn(arn: string): string {
  return Token.isUnresolved(arn) || /-[A-Za-z0-9]{6}$/.test(arn) ? arn : `${arn}-??????`;
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
 * substituted. Around it: the ways to start a migration (an EventBridge event, an EventBridge
 * Scheduler schedule the CLI creates), the Cleanup of executions that end without running it,
 * alarms, a dashboard, and the tags through which the CLI finds all of it from the state machine.
 */
export class PgferryMigration extends Construct {
  readonly stateMachine: sfn.StateMachine;
  /** Runs Cleanup for executions that were stopped, timed out or failed (undefined if the registry has no Cleanup function). */
  readonly stoppedExecutionRule?: events.Rule;
  /** Starts an execution, the event's detail as input, for each `startMigrationEvent` on the default bus. */
  readonly startRule: events.Rule;
  /** Events the rules could not deliver (encrypted, TLS only). */
  readonly deadLetterQueue: sqs.Queue;
  /** Every function of lambdas/registry.ts, by name (the workflow's and the operator's). */
  readonly functions: Readonly<Record<string, NodejsFunction>>;
  /** The function the CLI invokes for status and cutover (the registry's `operator` entry). */
  readonly operatorFunction?: NodejsFunction;
  readonly vpc: ec2.IVpc;
  readonly cluster: ecs.Cluster;
  /** The task definition of each task of tasks/registry.ts, by task name. */
  readonly taskDefinitions: Readonly<Record<string, ecs.TaskDefinition>>;
  /** The image of the generated task definitions; undefined when every task definition was given. */
  readonly taskImage?: DockerImageAsset;
  /** Shared by the functions that connect to the databases: allow it on the databases' security groups. */
  readonly databaseClientSecurityGroup: ec2.ISecurityGroup;
  /** Shared by the Fargate tasks: allow it on the databases' security groups. */
  readonly taskSecurityGroup: ec2.ISecurityGroup;
  /** Of the VPC endpoints, when the construct created the VPC and its endpoints. */
  readonly endpointSecurityGroup?: ec2.SecurityGroup;
  /** Encrypts the log groups and the alarm topic it creates (rotated yearly). */
  readonly encryptionKey: kms.Key;
  /** EventBridge Scheduler schedules of `pgferry schedule` go in this group. */
  readonly scheduleGroup: scheduler.CfnScheduleGroup;
  /** The role those schedules run with: it may start executions of this state machine only. */
  readonly schedulerRole: iam.Role;
  /** The deployment's name in the metrics (POWERTOOLS_SERVICE_NAME, the `service` dimension). */
  readonly serviceName: string;
  /** Where the alarms notify: the given topic, or a new encrypted one. */
  readonly alarmTopic: sns.ITopic;
  /** The alarms and the dashboard. */
  readonly monitoring: PgferryMonitoring;
  get dashboard(): cloudwatch.Dashboard {
    return this.monitoring.dashboard;
  }

  constructor(scope: Construct, id: string, props: PgferryMigrationProps = {}) {
    super(scope, id);
    const stack = Stack.of(this);
    const retention = props.logRetention ?? logs.RetentionDays.ONE_MONTH;
    const secretArns = props.secretArns ?? [];
    const secretKeyArns = props.secretKeyArns ?? [];
    const grantSecrets = (grantee: iam.IGrantable) => {
      if (secretArns.length === 0) return;
      grantee.grantPrincipal.addToPrincipalPolicy(
        new iam.PolicyStatement({ actions: ['secretsmanager:GetSecretValue'], resources: secretArns.map(secretPolicyArn) }),
      );
      if (secretKeyArns.length === 0) return;
      grantee.grantPrincipal.addToPrincipalPolicy(
        new iam.PolicyStatement({
          actions: ['kms:Decrypt'],
          resources: [...secretKeyArns],
          conditions: { StringEquals: { 'kms:ViaService': `secretsmanager.${stack.region}.amazonaws.com` } },
        }),
      );
    };
    this.serviceName = props.serviceName ?? `pgferry-${this.node.addr.slice(2, 10)}`;

    for (const name of [...Object.keys(props.taskDefinitions ?? {}), ...Object.keys(props.taskSizes ?? {})]) {
      if (!fargateTasks.some((task) => task.name === name)) {
        throw new Error(
          `PgferryMigration: '${name}' is not a task of tasks/registry.ts (${fargateTasks.map((task) => task.name).join(', ')}).`,
        );
      }
    }
    if (props.vpc && (props.natGateways !== undefined || props.vpcEndpoints !== undefined)) {
      throw new Error('PgferryMigration: natGateways and vpcEndpoints shape the VPC the construct creates; with a given vpc, leave them out.');
    }
    const operatorDefinitions = lambdaFunctions.filter((def) => def.operator);
    if (operatorDefinitions.length > 1) {
      throw new Error(`PgferryMigration: one operator function at most (the state machine tag names one), got ${operatorDefinitions.map((def) => def.name).join(', ')}.`);
    }

    // One customer managed key for everything the construct encrypts at rest: the log groups
    // (CloudWatch Logs uses it on behalf of this account's log groups only) and the alarm topic.
    this.encryptionKey = new kms.Key(this, 'Key', {
      description: 'pgferry: log groups and alarm topic',
      enableKeyRotation: true,
    });
    this.encryptionKey.addToResourcePolicy(
      new iam.PolicyStatement({
        principals: [new iam.ServicePrincipal(`logs.${stack.region}.amazonaws.com`)],
        actions: ['kms:Encrypt*', 'kms:Decrypt*', 'kms:ReEncrypt*', 'kms:GenerateDataKey*', 'kms:Describe*'],
        resources: ['*'],
        conditions: {
          ArnLike: {
            'kms:EncryptionContext:aws:logs:arn': stack.formatArn({
              service: 'logs',
              resource: 'log-group',
              resourceName: '*',
              arnFormat: ArnFormat.COLON_RESOURCE_NAME,
            }),
          },
        },
      }),
    );
    const logGroup = (logGroupId: string, logGroupName?: string) =>
      new logs.LogGroup(this, logGroupId, { retention, encryptionKey: this.encryptionKey, logGroupName });

    // Only for a VPC the construct creates (with a given vpc, vpcEndpoints was refused above).
    const endpoints = props.vpcEndpoints ?? true;
    const createdVpc = props.vpc
      ? undefined
      : createMigrationVpc(this, 'Vpc', { natGateways: props.natGateways ?? 1, endpoints, flowLogGroup: logGroup('FlowLogs') });
    this.vpc = props.vpc ?? createdVpc!;
    const vpcSubnets =
      props.vpcSubnets ?? (props.vpc ? { subnetType: ec2.SubnetType.PRIVATE_WITH_EGRESS } : { subnetGroupName: privateSubnetGroupName });
    // Fargate tasks run with awsvpc networking in these subnets and never get a public IP (the
    // ASL says AssignPublicIp DISABLED), so the subnets must reach ECR, CloudWatch Logs,
    // Secrets Manager and Step Functions through a NAT gateway or VPC endpoints.
    const taskSubnets = this.vpc.selectSubnets(vpcSubnets);
    if (taskSubnets.hasPublic) {
      throw new Error('PgferryMigration: vpcSubnets selects public subnets; the functions and tasks run without a public IP, use private subnets.');
    }

    const securityGroup = (securityGroupId: string, description: string) =>
      new ec2.SecurityGroup(this, securityGroupId, { vpc: this.vpc, description, allowAllOutbound: true });
    this.databaseClientSecurityGroup =
      props.databaseClientSecurityGroup ??
      securityGroup('DatabaseClientSecurityGroup', 'pgferry functions that connect to the source and target databases');
    // What the functions and the tasks need to publish their metrics under this deployment's name.
    const metricsEnvironment = {
      POWERTOOLS_SERVICE_NAME: this.serviceName,
      POWERTOOLS_METRICS_NAMESPACE: metrics.namespace,
    };

    const functions: Record<string, NodejsFunction> = {};
    for (const def of lambdaFunctions) {
      // A role of its own per function instead of the AWS managed execution policies: logs go
      // to the function's own log group only.
      const role = new iam.Role(this, `${def.name}Role`, {
        assumedBy: new iam.ServicePrincipal('lambda.amazonaws.com'),
        description: `pgferry ${def.name} function`,
      });
      const functionLogs = logGroup(`${def.name}Logs`);
      functionLogs.grantWrite(role);
      acknowledge(role, 'IAM5[Resource::*]', 'X-Ray PutTraceSegments/PutTelemetryRecords (active tracing)' +
        (def.needsDatabase ? ' and the VPC network interface actions Lambda requires on all resources (Create/Describe/DeleteNetworkInterface, DescribeSubnets, Assign/UnassignPrivateIpAddresses)' : '') +
        ' support no resource-level permissions.');
      if (def.needsDatabase) {
        // What AWSLambdaVPCAccessExecutionRole grants; Lambda checks them on all resources.
        role.addToPolicy(
          new iam.PolicyStatement({
            actions: [
              'ec2:CreateNetworkInterface',
              'ec2:DescribeNetworkInterfaces',
              'ec2:DescribeSubnets',
              'ec2:DeleteNetworkInterface',
              'ec2:AssignPrivateIpAddresses',
              'ec2:UnassignPrivateIpAddresses',
            ],
            resources: ['*'],
          }),
        );
      }
      const fn = new NodejsFunction(this, def.name, {
        entry: join(repoRoot, def.entry),
        handler: 'handler',
        runtime: lambda.Runtime.NODEJS_22_X,
        architecture: lambda.Architecture.ARM_64,
        timeout: Duration.seconds(def.timeoutSeconds),
        memorySize: def.memoryMb,
        role,
        tracing: lambda.Tracing.ACTIVE,
        projectRoot: repoRoot,
        depsLockFilePath: join(repoRoot, 'package-lock.json'),
        environment: {
          // Source maps are only applied to stack traces with this flag.
          NODE_OPTIONS: '--enable-source-maps',
          ...metricsEnvironment,
          POWERTOOLS_LOG_LEVEL: 'INFO',
        },
        logGroup: functionLogs,
        // The deployed recipe of infra/esbuild-recipe.ts, in CDK's terms; the Lambda runtime provides the AWS SDK.
        bundling: {
          format: OutputFormat.ESM,
          target: deployedBundleOptions.target,
          minify: deployedBundleOptions.minify,
          sourceMap: deployedBundleOptions.sourcemap,
          sourcesContent: deployedBundleOptions.sourcesContent,
          mainFields: [...deployedBundleOptions.mainFields],
          banner: deployedBundleOptions.banner.js,
          externalModules: ['@aws-sdk/*'],
          forceDockerBundling: false,
        },
        ...(def.needsDatabase
          ? { vpc: this.vpc, vpcSubnets, securityGroups: [this.databaseClientSecurityGroup] }
          : {}),
      });
      acknowledge(fn, 'L1', 'nodejs22.x on purpose: the same Node.js major as the task image (node:22) and the esbuild target node22, upgraded together; supported by Lambda.');
      if (def.needsDatabase) grantSecrets(fn);
      functions[def.name] = fn;
    }
    this.functions = functions;
    this.operatorFunction = operatorDefinitions[0] && functions[operatorDefinitions[0].name];
    /** The functions the workflow invokes: every one but the operator's. */
    const workflowDefinitions = lambdaFunctions.filter((def) => !def.operator);

    this.cluster = new ecs.Cluster(this, 'Cluster', {
      vpc: this.vpc,
      containerInsightsV2: ecs.ContainerInsights.ENABLED,
    });
    this.taskSecurityGroup =
      props.taskSecurityGroup ?? securityGroup('TaskSecurityGroup', 'pgferry Fargate tasks that connect to the source and target databases');

    if (createdVpc && endpoints) {
      this.endpointSecurityGroup = addMigrationEndpoints(createdVpc, [this.databaseClientSecurityGroup, this.taskSecurityGroup]);
    }

    // The tasks publish theirs as EMF on stdout, shipped by the awslogs driver.
    const taskEnvironment: Record<string, string> = { ...metricsEnvironment, [metrics.environment.name]: metrics.environment.emf };
    const taskDefinitions: Record<string, ecs.TaskDefinition> = {};
    let image: ecs.ContainerImage | undefined;
    let executionRole: iam.Role | undefined;
    for (const task of fargateTasks) {
      const given = props.taskDefinitions?.[task.name];
      if (given) {
        const container = given.findContainer(task.containerName);
        if (!given.isFargateCompatible || !container) {
          throw new Error(
            `PgferryMigration: the task definition given for '${task.name}' must be Fargate-compatible and have a container named '${task.containerName}'.`,
          );
        }
        for (const [name, value] of Object.entries(taskEnvironment)) container.addEnvironment(name, value);
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
        acknowledge(executionRole, 'IAM5[Resource::*]', 'ecr:GetAuthorizationToken supports no resource-level permissions; the image pull itself is limited to the asset repository.');
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
        environment: taskEnvironment,
        logging: ecs.LogDrivers.awsLogs({ streamPrefix: 'pgferry', logGroup: logGroup(`${task.name}TaskLogs`) }),
      });
      acknowledge(taskDefinition, 'ECS2', 'The environment holds only the metrics settings (service name, namespace, EMF switch), no secret: credentials are read from Secrets Manager by ARN at run time.');
      taskDefinitions[task.name] = taskDefinition;
    }
    this.taskDefinitions = taskDefinitions;
    for (const taskDefinition of Object.values(taskDefinitions)) {
      grantSecrets(taskDefinition.taskRole);
    }

    const definitionPath = props.definitionPath ?? migrationDefinitionPath;
    const definition = readFileSync(definitionPath, 'utf8');
    const placeholders = definitionPlaceholders(definition);

    const substitutions: Record<string, string> = {
      [infrastructurePlaceholders.cluster]: this.cluster.clusterArn,
      [infrastructurePlaceholders.subnets]: Fn.join(',', taskSubnets.subnetIds),
      [infrastructurePlaceholders.securityGroups]: this.taskSecurityGroup.securityGroupId,
    };
    for (const def of workflowDefinitions) {
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
      const operators = unsubstituted.filter((name) => operatorDefinitions.some((def) => def.arnPlaceholder === name));
      throw new Error(
        `PgferryMigration: ${definitionPath} uses ${unsubstituted.map((name) => `\${${name}}`).join(', ')}, ` +
          'which no entry of lambdas/registry.ts (arnPlaceholder) or tasks/registry.ts (taskDefinitionPlaceholder) ' +
          `provides, nor the construct (${Object.values(infrastructurePlaceholders).join(', ')})` +
          (operators.length > 0 ? `; ${operators.join(', ')} names an operator function, which the CLI invokes and the workflow never does.` : '.'),
      );
    }

    this.stateMachine = new sfn.StateMachine(this, 'StateMachine', {
      stateMachineName: props.stateMachineName,
      stateMachineType: sfn.StateMachineType.STANDARD,
      definitionBody: sfn.DefinitionBody.fromString(definition),
      definitionSubstitutions: substitutions,
      tracingEnabled: true,
      // Every event (state entered/exited, task scheduled/failed, …) for the audit trail, but not
      // the data: inputs and outputs (the spec, plans, comparison results that may name rows)
      // are in the execution history already, with its own access control; copying them into
      // the logs for the whole CDC loop would add a second copy and most of the log volume.
      logs: {
        // Under /aws/vendedlogs/ the log delivery needs no CloudWatch Logs resource policy per log
        // group (the account's policies are limited to 5,120 characters in all).
        destination: logGroup('StateMachineLogs', `/aws/vendedlogs/states/${this.serviceName}`),
        level: sfn.LogLevel.ALL,
        includeExecutionData: false,
      },
    });

    this.deadLetterQueue = new sqs.Queue(this, 'EventDeadLetterQueue', {
      encryption: sqs.QueueEncryption.SQS_MANAGED,
      enforceSSL: true,
      retentionPeriod: Duration.days(14),
    });
    acknowledge(this.deadLetterQueue, 'SQS3', 'This queue is itself the dead-letter queue of the EventBridge rule targets and of failed Cleanup invocations; an alarm watches it.');

    // A stopped, timed-out or failed execution may not have run Cleanup (a failure the ASL does
    // not catch ends the execution at once): this rule runs it, so no replication slot,
    // publication or cutover fence outlives the run. Cleanup is idempotent, so running it again
    // after an execution whose Cleanup state did run is harmless.
    const cleanup = functions.Cleanup;
    if (cleanup) {
      // The rule's queue catches failed deliveries only; a Cleanup that fails after delivery is
      // retried by Lambda and then lands in the same alarmed queue (recover with pgferry stop ARN).
      cleanup.configureAsyncInvoke({ retryAttempts: 2, onFailure: new destinations.SqsDestination(this.deadLetterQueue) });
      this.stoppedExecutionRule = new events.Rule(this, 'CleanupStoppedExecutions', {
        description: 'pgferry: runs Cleanup for executions that were stopped, timed out or failed',
        eventPattern: {
          source: ['aws.states'],
          detailType: ['Step Functions Execution Status Change'],
          detail: { status: ['ABORTED', 'TIMED_OUT', 'FAILED'], stateMachineArn: [this.stateMachine.stateMachineArn] },
        },
        targets: [
          new targets.LambdaFunction(cleanup, { retryAttempts: 4, maxEventAge: Duration.hours(2), deadLetterQueue: this.deadLetterQueue }),
        ],
      });
    }

    this.startRule = new events.Rule(this, 'StartFromEvent', {
      description: `pgferry: starts a migration for each '${startMigrationEvent.detailType}' event from '${startMigrationEvent.source}', the event's detail as the spec`,
      eventPattern: { source: [startMigrationEvent.source], detailType: [startMigrationEvent.detailType] },
      targets: [
        // The target's role may start executions of this state machine only.
        new targets.SfnStateMachine(this.stateMachine, {
          input: events.RuleTargetInput.fromEventPath('$.detail'),
          retryAttempts: 4,
          maxEventAge: Duration.hours(2),
          deadLetterQueue: this.deadLetterQueue,
        }),
      ],
    });

    // `pgferry schedule` creates one-time schedules in this group that run with this role.
    this.scheduleGroup = new scheduler.CfnScheduleGroup(this, 'ScheduleGroup', {});
    this.schedulerRole = new iam.Role(this, 'SchedulerRole', {
      assumedBy: new iam.ServicePrincipal('scheduler.amazonaws.com', {
        // Only schedules of this group may use it (as aws-scheduler-targets' own roles are scoped).
        conditions: { StringEquals: { 'aws:SourceAccount': stack.account, 'aws:SourceArn': this.scheduleGroup.attrArn } },
      }),
      description: 'pgferry: EventBridge Scheduler starts scheduled migrations',
    });
    this.stateMachine.grantStartExecution(this.schedulerRole);

    // The CLI finds the rest of the deployment from the state machine.
    const tags: Record<string, string> = {
      [stateMachineTags.schedulerRole]: this.schedulerRole.roleArn,
      [stateMachineTags.scheduleGroup]: this.scheduleGroup.ref,
    };
    if (this.operatorFunction) tags[stateMachineTags.operatorFunction] = this.operatorFunction.functionArn;
    // On the state machine only, not on the roles under it (the event target's).
    for (const [key, value] of Object.entries(tags)) {
      Tags.of(this.stateMachine).add(key, value, { includeResourceTypes: [sfn.CfnStateMachine.CFN_RESOURCE_TYPE_NAME] });
    }

    // DefinitionBody.fromString derives no permissions from the definition.
    const stateMachineRole = this.stateMachine.role;
    acknowledge(stateMachineRole, 'IAM5[Resource::*]', 'Log delivery (logs:CreateLogDelivery, …) and X-Ray (xray:PutTraceSegments, …) support no resource-level permissions.');
    const invoked = workflowDefinitions.map((def) => functions[def.name]!);
    if (invoked.length > 0) {
      // The ASL names the unqualified ARNs: no version or alias is ever invoked.
      this.stateMachine.addToRolePolicy(
        new iam.PolicyStatement({ actions: ['lambda:InvokeFunction'], resources: invoked.map((fn) => fn.functionArn) }),
      );
    }
    const taskDefinitionList = Object.values(taskDefinitions);
    if (taskDefinitionList.length > 0) {
      const inCluster = { ArnEquals: { 'ecs:cluster': this.cluster.clusterArn } };
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
        stateMachineRole,
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
      acknowledgeWildcardResources(stateMachineRole, followTasks, 'Task ARNs are generated at run time; the condition limits the statement to tasks of this cluster.');
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

    if (props.alarmTopic) {
      this.alarmTopic = props.alarmTopic;
    } else {
      this.alarmTopic = new sns.Topic(this, 'AlarmTopic', {
        displayName: 'pgferry alarms',
        masterKey: this.encryptionKey,
        enforceSSL: true,
      });
      // CloudWatch publishes the alarms to the encrypted topic.
      this.encryptionKey.addToResourcePolicy(
        new iam.PolicyStatement({
          principals: [new iam.ServicePrincipal('cloudwatch.amazonaws.com')],
          actions: ['kms:Decrypt', 'kms:GenerateDataKey*'],
          resources: ['*'],
        }),
      );
    }
    for (const email of props.alarmEmails ?? []) this.alarmTopic.addSubscription(new subscriptions.EmailSubscription(email));

    this.monitoring = new PgferryMonitoring(this, 'Monitoring', {
      stateMachine: this.stateMachine,
      functions,
      deadLetterQueue: this.deadLetterQueue,
      serviceName: this.serviceName,
      alarmTopic: this.alarmTopic,
    });
  }
}

import { Tags } from 'aws-cdk-lib';
import type * as cloudwatch from 'aws-cdk-lib/aws-cloudwatch';
import type * as ec2 from 'aws-cdk-lib/aws-ec2';
import type { DockerImageAsset } from 'aws-cdk-lib/aws-ecr-assets';
import type * as ecs from 'aws-cdk-lib/aws-ecs';
import type * as events from 'aws-cdk-lib/aws-events';
import type * as iam from 'aws-cdk-lib/aws-iam';
import type * as kms from 'aws-cdk-lib/aws-kms';
import type { NodejsFunction } from 'aws-cdk-lib/aws-lambda-nodejs';
import * as logs from 'aws-cdk-lib/aws-logs';
import type * as scheduler from 'aws-cdk-lib/aws-scheduler';
import type * as sns from 'aws-cdk-lib/aws-sns';
import type * as sqs from 'aws-cdk-lib/aws-sqs';
import * as sfn from 'aws-cdk-lib/aws-stepfunctions';
import { Construct } from 'constructs';
import { metrics, stateMachineTags } from '../platform/aws/deployment.js';
import { grantAlertTopics } from './alerts.js';
import { MigrationEncryption } from './encryption.js';
import { MigrationFunctions, operatorDefinition, workflowFunctionDefinitions } from './functions.js';
import { migrationAlarmTopic, PgferryMonitoring } from './monitoring.js';
import { checkNetworkProps, MigrationNetwork, type MigrationNetworkProps } from './network.js';
import { migrationDefinitionPath } from './paths.js';
import { MigrationStateMachine } from './state-machine.js';
import { checkTaskNames, createTaskCluster, type FargateTaskSize, MigrationTasks } from './tasks.js';
import { MigrationTriggers } from './triggers.js';

export interface PgferryMigrationProps extends MigrationNetworkProps {
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
  /**
   * Secrets applications read their database connection from, which cutover.switch rewrites to
   * point them at the target (and back at fallback): FinishMigration and Fallback may read and put them.
   * @default none
   */
  readonly applicationSecretArns?: readonly string[];
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
   * SNS topics a spec's alerts.snsTopicArn may name (issue 15, item 4): the functions and the
   * task that publish a migration's alerts may publish to these only, and ValidateSpec refuses
   * a spec naming another. @default none (a spec with alerts.snsTopicArn is refused)
   */
  readonly alertTopicArns?: readonly string[];
  /** Customer managed KMS keys of those topics, if encrypted: the publishers may use them through SNS. @default none */
  readonly alertTopicKeyArns?: readonly string[];
  /**
   * The deployment's name in the metrics: POWERTOOLS_SERVICE_NAME of every function and task,
   * the `service` dimension the lag alarm and the dashboard read.
   * @default `pgferry-` + 8 hex digits unique to this construct's path
   */
  readonly serviceName?: string;
}

/**
 * The pgferry workflow: one Lambda per entry of lambdas/registry.ts, one Fargate task
 * definition per entry of tasks/registry.ts (an ECS cluster, one shared container image), and
 * the Step Functions state machine of state-machines/migration.asl.json, its placeholders
 * substituted. Around it: the ways to start a migration (an EventBridge event, an EventBridge
 * Scheduler schedule the CLI creates), the Cleanup of executions that end without running it,
 * alarms, a dashboard, and the tags through which the CLI finds all of it from the state machine.
 *
 * Composed of parts, one file each: encryption.ts, network.ts, functions.ts, tasks.ts,
 * state-machine.ts, triggers.ts and monitoring.ts. All but the monitoring build straight into
 * this construct, so every resource keeps the logical ID it has always had.
 */
export class PgferryMigration extends Construct {
  readonly stateMachine: sfn.StateMachine;
  /** Runs Cleanup for executions that were stopped, timed out or failed (undefined if the registry has no Cleanup function). */
  readonly stoppedExecutionRule?: events.Rule;
  /** Starts an execution, the event's detail as input, for each `startMigrationEvent` on the default bus. */
  readonly startRule: events.Rule;
  /** Starts an execution that resumes a paused run, for each `resumeMigrationEvent` (its detail: the spec). */
  readonly resumeRule: events.Rule;
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
    // Refused before anything is built.
    checkTaskNames(props);
    checkNetworkProps(props);
    operatorDefinition();
    this.serviceName = props.serviceName ?? `pgferry-${this.node.addr.slice(2, 10)}`;

    // The parts are built in the order their resources have in the template, which the reviewed
    // snapshot holds (test/unit/infra-snapshot.test.ts): that is why the network comes in two steps.
    const encryption = new MigrationEncryption(this, {
      retention: props.logRetention ?? logs.RetentionDays.ONE_MONTH,
      secretArns: props.secretArns ?? [],
      secretKeyArns: props.secretKeyArns ?? [],
      applicationSecretArns: props.applicationSecretArns ?? [],
    });
    this.encryptionKey = encryption.key;
    const network = new MigrationNetwork(this, props, (logGroupId) => encryption.logGroup(logGroupId));
    this.vpc = network.vpc;
    this.databaseClientSecurityGroup = network.databaseClientSecurityGroup;
    // What the functions and the tasks need to publish their metrics under this deployment's name.
    const metricsEnvironment = {
      POWERTOOLS_SERVICE_NAME: this.serviceName,
      POWERTOOLS_METRICS_NAMESPACE: metrics.namespace,
    };
    const functions = new MigrationFunctions(this, {
      encryption,
      vpc: network.vpc,
      vpcSubnets: network.vpcSubnets,
      databaseClientSecurityGroup: network.databaseClientSecurityGroup,
      // PausedStatus publishes the retained WAL of a paused run in the embedded metric format.
      metricsEnvironment: { ...metricsEnvironment, [metrics.environment.name]: metrics.environment.emf },
    });
    this.functions = functions.functions;
    this.operatorFunction = functions.operatorFunction;

    this.cluster = createTaskCluster(this, this.vpc);
    const taskNetwork = network.addTaskSecurityGroup();
    this.taskSecurityGroup = taskNetwork.taskSecurityGroup;
    this.endpointSecurityGroup = taskNetwork.endpointSecurityGroup;
    const tasks = new MigrationTasks(this, {
      encryption,
      taskDefinitions: props.taskDefinitions,
      taskSizes: props.taskSizes,
      // The tasks publish theirs as EMF on stdout, shipped by the awslogs driver.
      environment: { ...metricsEnvironment, [metrics.environment.name]: metrics.environment.emf },
    });
    this.taskDefinitions = tasks.taskDefinitions;
    this.taskImage = tasks.taskImage;
    grantAlertTopics({
      alertTopicArns: props.alertTopicArns ?? [],
      alertTopicKeyArns: props.alertTopicKeyArns ?? [],
      functions: this.functions,
      taskDefinitions: this.taskDefinitions,
      ...(this.endpointSecurityGroup ? { endpoints: { vpc: this.vpc, securityGroup: this.endpointSecurityGroup } } : {}),
    });

    this.stateMachine = new MigrationStateMachine(this, {
      definitionPath: props.definitionPath ?? migrationDefinitionPath,
      stateMachineName: props.stateMachineName,
      serviceName: this.serviceName,
      encryption,
      functions: this.functions,
      workflowFunctions: workflowFunctionDefinitions,
      taskDefinitions: this.taskDefinitions,
      cluster: this.cluster,
      taskSubnets: network.taskSubnets,
      taskSecurityGroup: this.taskSecurityGroup,
    }).stateMachine;

    const triggers = new MigrationTriggers(this, { stateMachine: this.stateMachine, cleanup: this.functions.Cleanup });
    this.deadLetterQueue = triggers.deadLetterQueue;
    this.stoppedExecutionRule = triggers.stoppedExecutionRule;
    this.startRule = triggers.startRule;
    this.resumeRule = triggers.resumeRule;
    this.scheduleGroup = triggers.scheduleGroup;
    this.schedulerRole = triggers.schedulerRole;
    this.tagForTheCli();

    this.alarmTopic = migrationAlarmTopic(this, { given: props.alarmTopic, encryption, emails: props.alarmEmails ?? [] });
    this.monitoring = new PgferryMonitoring(this, 'Monitoring', {
      stateMachine: this.stateMachine,
      functions: this.functions,
      deadLetterQueue: this.deadLetterQueue,
      serviceName: this.serviceName,
      alarmTopic: this.alarmTopic,
    });
  }

  /** The CLI finds the rest of the deployment from the state machine. */
  private tagForTheCli(): void {
    const tags: Record<string, string> = {
      [stateMachineTags.schedulerRole]: this.schedulerRole.roleArn,
      [stateMachineTags.scheduleGroup]: this.scheduleGroup.ref,
    };
    if (this.operatorFunction) tags[stateMachineTags.operatorFunction] = this.operatorFunction.functionArn;
    // On the state machine only, not on the roles under it (the event target's).
    for (const [key, value] of Object.entries(tags)) {
      Tags.of(this.stateMachine).add(key, value, { includeResourceTypes: [sfn.CfnStateMachine.CFN_RESOURCE_TYPE_NAME] });
    }
  }
}

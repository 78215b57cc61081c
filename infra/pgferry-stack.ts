import { CfnOutput, Stack, Validations, type StackProps } from 'aws-cdk-lib';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import * as logs from 'aws-cdk-lib/aws-logs';
import * as sns from 'aws-cdk-lib/aws-sns';
import type { Construct } from 'constructs';
import { PgferryMigration, type PgferryMigrationProps } from './pgferry-migration.js';

/**
 * The deployable pgferry workflow, configured from CDK context (cdk.json, or `-c key=value`;
 * lists are JSON, an empty string or list means unset):
 * - `secretArns`: Secrets Manager ARNs the functions and tasks may read, a JSON list
 *   (`-c 'secretArns=["arn:aws:secretsmanager:…"]'` or a list in cdk.json);
 * - `applicationSecretArns`: secrets applications read their connection from, which
 *   cutover.switch rewrites (a JSON list; FinishMigration and Fallback may read and put them);
 * - `secretKmsKeyArns`: customer-managed KMS keys of those secrets, a JSON list (decrypt
 *   through Secrets Manager only);
 * - `stateMachineName`: optional fixed name;
 * - `logRetentionDays`: one of the CloudWatch Logs retention values;
 * - networking, either an existing VPC, used without lookups:
 *   `vpcId`, `subnetIds` (JSON list of private subnets for the functions and tasks) and
 *   `availabilityZones` (JSON list: the AZs of those subnets, in the same order; the number of
 *   subnets must be a multiple of it); optionally `databaseClientSecurityGroupId` and
 *   `taskSecurityGroupId` (existing security groups for the functions and for the tasks) —
 *   the VPC must reach Secrets Manager, ECR (+ S3), CloudWatch Logs and Step Functions;
 * - or a new VPC (no `vpcId`) over 2 AZs with private subnets and flow logs:
 *   `natGateways` (default 1: sources outside AWS need egress; 0 gives isolated subnets) and
 *   `vpcEndpoints` (default true: Secrets Manager, ECR, CloudWatch Logs and Step Functions
 *   interface endpoints and an S3 gateway endpoint); both ignored with `vpcId`;
 * - alerts: `alarmTopicArn` (an existing SNS topic) or a new encrypted topic, and
 *   `alarmEmails` (JSON list of addresses subscribed to it);
 * - per-migration alert topics: `alertTopicArns` (JSON list of SNS topic ARNs a spec's
 *   alerts.snsTopicArn may name; the alerting functions and task may publish to them only) and
 *   `alertTopicKmsKeyArns` (JSON list: the customer managed keys of those topics, if encrypted).
 * The outputs name the security groups of the functions and the tasks (allow them on the
 * databases), the operator function, the alarm topic and the dashboard.
 */
export class PgferryStack extends Stack {
  readonly migration: PgferryMigration;

  constructor(scope: Construct, id: string, props?: StackProps) {
    super(scope, id, { description: 'pgferry: online PostgreSQL to PostgreSQL migration (Step Functions workflow)', ...props });
    const context = (key: string) => this.node.tryGetContext(key) as unknown;

    this.migration = new PgferryMigration(this, 'Migration', {
      secretArns: listFromContext(context('secretArns'), 'secretArns', /^arn:aws[a-z-]*:secretsmanager:[a-z0-9-]+:\d{12}:secret:.+$/, 'Secrets Manager secret ARNs'),
      applicationSecretArns: listFromContext(
        context('applicationSecretArns'),
        'applicationSecretArns',
        /^arn:aws[a-z-]*:secretsmanager:[a-z0-9-]+:\d{12}:secret:.+$/,
        'Secrets Manager secret ARNs',
      ),
      secretKeyArns: listFromContext(context('secretKmsKeyArns'), 'secretKmsKeyArns', /^arn:aws[a-z-]*:kms:[a-z0-9-]+:\d{12}:key\/[A-Za-z0-9-]+$/, 'KMS key ARNs'),
      stateMachineName: stringFromContext(context('stateMachineName'), 'stateMachineName'),
      logRetention: retentionFromContext(context('logRetentionDays')),
      ...this.networkFromContext(context),
      alarmTopic: this.alarmTopicFromContext(stringFromContext(context('alarmTopicArn'), 'alarmTopicArn')),
      alarmEmails: listFromContext(context('alarmEmails'), 'alarmEmails', /^[^\s@]+@[^\s@]+$/, 'e-mail addresses'),
      alertTopicArns: listFromContext(context('alertTopicArns'), 'alertTopicArns', SNS_TOPIC_ARN, 'SNS topic ARNs'),
      alertTopicKeyArns: listFromContext(context('alertTopicKmsKeyArns'), 'alertTopicKmsKeyArns', KMS_KEY_ARN, 'KMS key ARNs'),
    });
    const migration = this.migration;

    const outputs: [id: string, value: string | undefined, description: string][] = [
      ['StateMachineArn', migration.stateMachine.stateMachineArn, 'Start a migration by starting an execution of this state machine with the spec as input.'],
      ['DatabaseClientSecurityGroupId', migration.databaseClientSecurityGroup.securityGroupId, 'Allow this security group (the database functions) on the source and target databases.'],
      ['TaskSecurityGroupId', migration.taskSecurityGroup.securityGroupId, 'Allow this security group (the Fargate tasks) on the source and target databases.'],
      ['OperatorFunctionArn', migration.operatorFunction?.functionArn, 'The function the pgferry CLI invokes for the status and the cutover of a run (also a tag of the state machine).'],
      ['ScheduleGroupName', migration.scheduleGroup.ref, 'EventBridge Scheduler group of scheduled migrations (pgferry schedule).'],
      ['SchedulerRoleArn', migration.schedulerRole.roleArn, 'The role scheduled migrations run with: it may start executions of this state machine only.'],
      ['AlarmTopicArn', migration.alarmTopic.topicArn, 'SNS topic of the alarms (failed or timed-out executions, replication lag, function errors).'],
      ['DashboardName', migration.dashboard.dashboardName, 'CloudWatch dashboard of this deployment.'],
      ['MetricsServiceName', migration.serviceName, `The 'service' dimension of this deployment's metrics.`],
    ];
    for (const [outputId, value, description] of outputs) if (value !== undefined) new CfnOutput(this, outputId, { value, description });
  }

  private networkFromContext(context: (key: string) => unknown): Partial<PgferryMigrationProps> {
    const vpcId = stringFromContext(context('vpcId'), 'vpcId');
    if (vpcId === undefined) {
      for (const key of ['subnetIds', 'availabilityZones', 'databaseClientSecurityGroupId', 'taskSecurityGroupId']) {
        const value = context(key);
        if (!isUnset(value) && !(Array.isArray(value) && value.length === 0) && value !== '[]') {
          throw new Error(`Context '${key}' needs 'vpcId': it describes an existing VPC.`);
        }
      }
      return {
        natGateways: natGatewaysFromContext(context('natGateways')),
        vpcEndpoints: booleanFromContext(context('vpcEndpoints'), 'vpcEndpoints'),
      };
    }
    if (!resourceId('vpc').test(vpcId)) throw new Error(`Context 'vpcId' must be a VPC id (vpc-…), got: ${vpcId}`);
    const subnetIds = listFromContext(context('subnetIds'), 'subnetIds', resourceId('subnet'), 'subnet ids');
    const availabilityZones = listFromContext(context('availabilityZones'), 'availabilityZones', /^[a-z0-9-]+$/, 'availability zone names');
    if (!subnetIds?.length || !availabilityZones?.length) {
      throw new Error("Context 'vpcId' needs 'subnetIds' and 'availabilityZones' (JSON lists): the VPC is used as given, without lookups.");
    }
    if (subnetIds.length % availabilityZones.length !== 0) {
      throw new Error(
        `Context 'subnetIds' (${subnetIds.length}) must hold the same number of subnets in each of the 'availabilityZones' (${availabilityZones.length}), in their order.`,
      );
    }
    // Imported as private subnets; no lookup, so synth needs neither credentials nor a context cache.
    const vpc = ec2.Vpc.fromVpcAttributes(this, 'Vpc', { vpcId, availabilityZones, privateSubnetIds: subnetIds });
    Validations.of(vpc).acknowledge({
      id: 'Annotation::@aws-cdk/aws-ec2:noSubnetRouteTableId',
      reason: 'Nothing reads the route tables of the given subnets: pgferry adds no endpoints or routes to a VPC it does not own.',
    });
    const securityGroup = (key: string, id: string) => {
      const groupId = stringFromContext(context(key), key);
      if (groupId === undefined) return undefined;
      if (!resourceId('sg').test(groupId)) throw new Error(`Context '${key}' must be a security group id (sg-…), got: ${groupId}`);
      // Immutable: the stack never adds rules to a group it does not own.
      return ec2.SecurityGroup.fromSecurityGroupId(this, id, groupId, { mutable: false });
    };
    return {
      vpc,
      vpcSubnets: { subnets: vpc.privateSubnets },
      databaseClientSecurityGroup: securityGroup('databaseClientSecurityGroupId', 'DatabaseClientSecurityGroup'),
      taskSecurityGroup: securityGroup('taskSecurityGroupId', 'TaskSecurityGroup'),
    };
  }

  private alarmTopicFromContext(arn: string | undefined): sns.ITopic | undefined {
    if (arn === undefined) return undefined;
    if (!SNS_TOPIC_ARN.test(arn)) {
      throw new Error(`Context 'alarmTopicArn' must be an SNS topic ARN, got: ${arn}`);
    }
    return sns.Topic.fromTopicArn(this, 'AlarmTopic', arn);
  }
}

const SNS_TOPIC_ARN = /^arn:aws[a-z-]*:sns:[a-z0-9-]+:\d{12}:[A-Za-z0-9_-]+(\.fifo)?$/;
const KMS_KEY_ARN = /^arn:aws[a-z-]*:kms:[a-z0-9-]+:\d{12}:key\/[A-Za-z0-9-]+$/;

// `-c key=value` on the command line always yields a string; cdk.json yields JSON values.
function parseContext(value: unknown, key: string): unknown {
  if (typeof value !== 'string') return value;
  try {
    return JSON.parse(value);
  } catch {
    throw new Error(`Context '${key}' must be JSON, got: ${value}`);
  }
}

/** Unset: not given, or given as an empty string (`-c key=`). */
function isUnset(raw: unknown): boolean {
  return raw === undefined || raw === '';
}

/** A JSON list of strings, each matching `pattern`; undefined when unset or empty. */
function listFromContext(raw: unknown, key: string, pattern: RegExp, what: string): string[] | undefined {
  if (isUnset(raw)) return undefined;
  const value = parseContext(raw, key);
  if (!Array.isArray(value) || !value.every((item) => typeof item === 'string' && pattern.test(item))) {
    throw new Error(`Context '${key}' must be a JSON list of ${what}, got: ${JSON.stringify(raw)}`);
  }
  return value.length > 0 ? value : undefined;
}

/** An EC2 id: the prefix, then 8 or 17 hexadecimal digits. */
function resourceId(prefix: string): RegExp {
  return new RegExp(`^${prefix}-([0-9a-f]{8}|[0-9a-f]{17})$`);
}

function stringFromContext(raw: unknown, key: string): string | undefined {
  if (isUnset(raw)) return undefined;
  if (typeof raw !== 'string') throw new Error(`Context '${key}' must be a string, got: ${JSON.stringify(raw)}`);
  return raw;
}

function natGatewaysFromContext(raw: unknown): number | undefined {
  if (isUnset(raw)) return undefined;
  const count = Number(raw);
  if (!Number.isInteger(count) || count < 0 || count > 2) {
    throw new Error(`Context 'natGateways' must be 0, 1 or 2 (one per AZ at most), got: ${JSON.stringify(raw)}`);
  }
  return count;
}

function booleanFromContext(raw: unknown, key: string): boolean | undefined {
  if (isUnset(raw)) return undefined;
  if (raw === true || raw === 'true') return true;
  if (raw === false || raw === 'false') return false;
  throw new Error(`Context '${key}' must be true or false, got: ${JSON.stringify(raw)}`);
}

function retentionFromContext(raw: unknown): logs.RetentionDays | undefined {
  if (raw === undefined) return undefined;
  const days = Number(raw);
  const allowed = Object.values(logs.RetentionDays).filter((v): v is number => typeof v === 'number');
  if (!allowed.includes(days)) {
    throw new Error(`Context 'logRetentionDays' must be one of ${allowed.join(', ')}, got: ${JSON.stringify(raw)}`);
  }
  return days as logs.RetentionDays;
}

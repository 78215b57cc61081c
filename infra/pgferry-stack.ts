import { CfnOutput, Stack, type StackProps } from 'aws-cdk-lib';
import * as logs from 'aws-cdk-lib/aws-logs';
import type { Construct } from 'constructs';
import { PgferryMigration } from './pgferry-migration.js';

/**
 * The deployable pgferry workflow, configured from CDK context:
 * - `secretArns`: Secrets Manager ARNs the functions and tasks may read, a JSON list
 *   (`-c 'secretArns=["arn:aws:secretsmanager:…"]'` or a list in cdk.json);
 * - `stateMachineName`: optional fixed name;
 * - `logRetentionDays`: one of the CloudWatch Logs retention values.
 * The workflow runs in a VPC of its own (private subnets, one NAT gateway); the outputs name the
 * security groups of its functions and tasks, to allow on the databases.
 */
export class PgferryStack extends Stack {
  readonly migration: PgferryMigration;

  constructor(scope: Construct, id: string, props?: StackProps) {
    super(scope, id, props);

    this.migration = new PgferryMigration(this, 'Migration', {
      secretArns: secretArnsFromContext(this.node.tryGetContext('secretArns')),
      stateMachineName: stringFromContext(this.node.tryGetContext('stateMachineName'), 'stateMachineName'),
      logRetention: retentionFromContext(this.node.tryGetContext('logRetentionDays')),
    });

    new CfnOutput(this, 'StateMachineArn', {
      value: this.migration.stateMachine.stateMachineArn,
      description: 'Start a migration by starting an execution of this state machine with the spec as input.',
    });
    new CfnOutput(this, 'DatabaseClientSecurityGroupId', {
      value: this.migration.databaseClientSecurityGroup.securityGroupId,
      description: 'Allow this security group (the database functions) on the source and target databases.',
    });
    new CfnOutput(this, 'TaskSecurityGroupId', {
      value: this.migration.taskSecurityGroup.securityGroupId,
      description: 'Allow this security group (the Fargate tasks) on the source and target databases.',
    });
  }
}

// `-c key=value` on the command line always yields a string; cdk.json yields JSON values.
function parseContext(value: unknown, key: string): unknown {
  if (typeof value !== 'string') return value;
  try {
    return JSON.parse(value);
  } catch {
    throw new Error(`Context '${key}' must be JSON, got: ${value}`);
  }
}

function secretArnsFromContext(raw: unknown): string[] | undefined {
  if (raw === undefined) return undefined;
  const value = parseContext(raw, 'secretArns');
  const secretArn = /^arn:aws[a-z-]*:secretsmanager:[a-z0-9-]+:\d{12}:secret:.+$/;
  if (!Array.isArray(value) || !value.every((arn) => typeof arn === 'string' && secretArn.test(arn))) {
    throw new Error(
      `Context 'secretArns' must be a JSON list of Secrets Manager secret ARNs, got: ${JSON.stringify(raw)}`,
    );
  }
  return value;
}

function stringFromContext(raw: unknown, key: string): string | undefined {
  if (raw === undefined || raw === '') return undefined;
  if (typeof raw !== 'string') throw new Error(`Context '${key}' must be a string, got: ${JSON.stringify(raw)}`);
  return raw;
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

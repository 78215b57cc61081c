/**
 * What PgferryMigration encrypts and which secrets it may read: one customer managed key for
 * the log groups and the alarm topic, the log groups themselves, and the grants on the
 * source/target secrets (and their KMS keys) for the roles that connect to the databases.
 */
import { ArnFormat, Stack, Token } from 'aws-cdk-lib';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as kms from 'aws-cdk-lib/aws-kms';
import * as logs from 'aws-cdk-lib/aws-logs';
import type { Construct } from 'constructs';

/**
 * A secret ARN as IAM matches it: a complete ARN ends in "-" and six random characters that
 * Secrets Manager adds; a partial one (the secret's name only) matches nothing in a policy
 * unless those are wildcarded.
 */
export function secretPolicyArn(arn: string): string {
  return Token.isUnresolved(arn) || /-[A-Za-z0-9]{6}$/.test(arn) ? arn : `${arn}-??????`;
}

export interface MigrationEncryptionProps {
  readonly retention: logs.RetentionDays;
  /** Secrets the database roles may read: complete or partial ARNs. */
  readonly secretArns: readonly string[];
  /** Customer managed keys of those secrets: decrypt through Secrets Manager only. */
  readonly secretKeyArns: readonly string[];
  /** Secrets of applications that cutover.switch points at the target (and back at fallback): read and put. */
  readonly applicationSecretArns: readonly string[];
}

/**
 * Builds into the scope it is given (no construct level of its own, so the logical IDs stay
 * those of PgferryMigration's direct children): the key `Key`, and the log groups on demand.
 */
export class MigrationEncryption {
  /** Encrypts the log groups and the alarm topic it creates (rotated yearly). */
  readonly key: kms.Key;

  constructor(
    private readonly scope: Construct,
    private readonly props: MigrationEncryptionProps,
  ) {
    const stack = Stack.of(scope);
    // One customer managed key for everything the construct encrypts at rest: the log groups
    // (CloudWatch Logs uses it on behalf of this account's log groups only) and the alarm topic.
    this.key = new kms.Key(scope, 'Key', {
      description: 'pgferry: log groups and alarm topic',
      enableKeyRotation: true,
    });
    this.key.addToResourcePolicy(
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
  }

  /** A log group with the deployment's retention, encrypted with the key. */
  logGroup(id: string, logGroupName?: string): logs.LogGroup {
    return new logs.LogGroup(this.scope, id, { retention: this.props.retention, encryptionKey: this.key, logGroupName });
  }

  /** Lets `grantee` read the configured secrets (and decrypt them, through Secrets Manager only). */
  grantSecrets(grantee: iam.IGrantable): void {
    const { secretArns, secretKeyArns } = this.props;
    if (secretArns.length === 0) return;
    grantee.grantPrincipal.addToPrincipalPolicy(
      new iam.PolicyStatement({ actions: ['secretsmanager:GetSecretValue'], resources: secretArns.map(secretPolicyArn) }),
    );
    if (secretKeyArns.length === 0) return;
    grantee.grantPrincipal.addToPrincipalPolicy(
      new iam.PolicyStatement({
        actions: ['kms:Decrypt'],
        resources: [...secretKeyArns],
        conditions: { StringEquals: { 'kms:ViaService': `secretsmanager.${Stack.of(this.scope).region}.amazonaws.com` } },
      }),
    );
  }

  /** Lets `grantee` rewrite the applications' secrets (cutover.switch); encrypted with a customer managed key, that key must be in secretKeyArns. */
  grantApplicationSecrets(grantee: iam.IGrantable): void {
    const { applicationSecretArns, secretKeyArns } = this.props;
    if (applicationSecretArns.length === 0) return;
    grantee.grantPrincipal.addToPrincipalPolicy(
      new iam.PolicyStatement({ actions: ['secretsmanager:GetSecretValue', 'secretsmanager:PutSecretValue'], resources: applicationSecretArns.map(secretPolicyArn) }),
    );
    if (secretKeyArns.length === 0) return;
    grantee.grantPrincipal.addToPrincipalPolicy(
      new iam.PolicyStatement({
        actions: ['kms:Encrypt', 'kms:GenerateDataKey'],
        resources: [...secretKeyArns],
        conditions: { StringEquals: { 'kms:ViaService': `secretsmanager.${Stack.of(this.scope).region}.amazonaws.com` } },
      }),
    );
  }

  /** CloudWatch publishes the alarms to a topic encrypted with the key. */
  allowCloudWatchAlarms(): void {
    this.key.addToResourcePolicy(
      new iam.PolicyStatement({
        principals: [new iam.ServicePrincipal('cloudwatch.amazonaws.com')],
        actions: ['kms:Decrypt', 'kms:GenerateDataKey*'],
        resources: ['*'],
      }),
    );
  }
}

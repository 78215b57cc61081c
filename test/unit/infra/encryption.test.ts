/** Encryption and secrets (infra/encryption.ts): the key, and the grants on the source and target secrets. */
import type { Construct } from 'constructs';
import { describe, expect, it } from 'vitest';
import { lambdaFunctions } from '../../../lambdas/registry.js';
import {
  actionsOf,
  functionRoleId,
  infraTestStacks,
  logicalId,
  only,
  render,
  type Resource,
  resourcesOf,
  roleIdOf,
  roleStatements,
  sourceArn,
  stateMachineRoleId,
  type Statement,
  targetArn,
  taskDefinitionsOf,
} from '../../support/infra.js';

// Synth (and the whole file) must not need Docker: any attempt to use it fails.
const { synthStack, defaultStack, secretStack } = infraTestStacks('infra-encryption');

describe('PgferryMigration encryption', () => {
  it('grants no secret access when no secret ARNs are configured', () => {
    const { template } = defaultStack();
    // (The Secrets Manager VPC endpoint names the service; no policy does.)
    expect(JSON.stringify(template.findResources('AWS::IAM::Policy'))).not.toContain('secretsmanager');
    expect(JSON.stringify(template.findResources('AWS::IAM::Role'))).not.toContain('secretsmanager');
  });

  it.each([
    ['a list (cdk.json)', () => secretStack()],
    ['a JSON string (-c on the command line)', () => synthStack({ secretArns: JSON.stringify([sourceArn, targetArn]) })],
  ])('grants GetSecretValue on exactly the context secretArns given as %s, to database functions and tasks only', (_, synth) => {
    const { stack, template } = synth();
    const secretStatementsOf = (roleId: string) =>
      roleStatements(template, roleId).filter((s) => actionsOf(s).some((action) => action.startsWith('secretsmanager:')));
    const granted = [{ Effect: 'Allow', Action: 'secretsmanager:GetSecretValue', Resource: [sourceArn, targetArn] }];
    for (const definition of lambdaFunctions) {
      const roleId = functionRoleId(template, logicalId(stack.migration.functions[definition.name]!));
      expect(secretStatementsOf(roleId)).toEqual(definition.needsDatabase ? granted : []);
    }
    expect(lambdaFunctions.some((definition) => definition.needsDatabase)).toBe(true);

    const executionRoles = new Set<string>();
    for (const taskDefinition of Object.values(taskDefinitionsOf(template, stack.migration))) {
      expect(secretStatementsOf(roleIdOf(taskDefinition.Properties.TaskRoleArn))).toEqual(granted);
      executionRoles.add(roleIdOf(taskDefinition.Properties.ExecutionRoleArn));
    }
    for (const roleId of executionRoles) expect(secretStatementsOf(roleId)).toEqual([]);
    expect(secretStatementsOf(stateMachineRoleId(template))).toEqual([]);
  });

  it('lets the same roles decrypt with the secrets\' customer-managed KMS keys, through Secrets Manager only', () => {
    const key = 'arn:aws:kms:eu-west-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab';
    const { stack, template } = synthStack({ secretArns: [sourceArn, targetArn], secretKmsKeyArns: [key] });
    const decryptOf = (roleId: string) => roleStatements(template, roleId).filter((s) => actionsOf(s).includes('kms:Decrypt'));
    const expected = [
      {
        Effect: 'Allow',
        Action: 'kms:Decrypt',
        Resource: key,
        Condition: { StringEquals: { 'kms:ViaService': { 'Fn::Join': ['', ['secretsmanager.', { Ref: 'AWS::Region' }, '.amazonaws.com']] } } },
      },
    ];
    for (const definition of lambdaFunctions) {
      const roleId = functionRoleId(template, logicalId(stack.migration.functions[definition.name]!));
      expect(decryptOf(roleId)).toEqual(definition.needsDatabase ? expected : []);
    }
    for (const taskDefinition of Object.values(taskDefinitionsOf(template, stack.migration))) {
      expect(decryptOf(roleIdOf(taskDefinition.Properties.TaskRoleArn))).toEqual(expected);
    }
    expect(() => synthStack({ secretKmsKeyArns: ['alias/my-key'] })).toThrow(/secretKmsKeyArns/);
  });

  it('wildcards the suffix of a partial secret ARN (the name only), which IAM would otherwise match to nothing', () => {
    const partial = 'arn:aws:secretsmanager:eu-west-1:123456789012:secret:pgferry/source';
    const { stack, template } = synthStack({ secretArns: [partial, targetArn] });
    const roleId = functionRoleId(template, logicalId(stack.migration.functions.Precheck!));
    const statement = roleStatements(template, roleId).find((s) => actionsOf(s).includes('secretsmanager:GetSecretValue'));
    expect(statement?.Resource).toEqual([`${partial}-??????`, targetArn]);
  });

  it('encrypts the new alarm topic with the rotated key, TLS only, and lets CloudWatch and CloudWatch Logs use the key', () => {
    const { stack, template } = defaultStack();
    const migration = stack.migration;
    const keyId = logicalId(migration.encryptionKey);
    const topicId = logicalId(migration.alarmTopic as Construct);
    expect(resourcesOf(template)[topicId]!.Properties).toMatchObject({ KmsMasterKeyId: { 'Fn::GetAtt': [keyId, 'Arn'] } });
    const [, topicPolicy] = only(template.findResources('AWS::SNS::TopicPolicy') as Record<string, Resource>);
    expect(topicPolicy.Properties.PolicyDocument.Statement).toEqual([
      expect.objectContaining({ Effect: 'Deny', Action: 'sns:Publish', Condition: { Bool: { 'aws:SecureTransport': 'false' } } }),
    ]);
    const key = resourcesOf(template)[keyId]!;
    expect(key.Properties.EnableKeyRotation).toBe(true);
    const statements = key.Properties.KeyPolicy.Statement as (Statement & { Principal: any })[];
    const logs = statements.find((statement) => JSON.stringify(statement.Principal).includes('logs.'))!;
    expect(render(logs.Principal.Service)).toBe('logs.<<AWS::Region>>.amazonaws.com');
    expect(render(logs.Condition && (logs.Condition as any).ArnLike['kms:EncryptionContext:aws:logs:arn'])).toBe(
      'arn:<<AWS::Partition>>:logs:<<AWS::Region>>:<<AWS::AccountId>>:log-group:*',
    );
    expect(statements.find((statement) => statement.Principal.Service === 'cloudwatch.amazonaws.com')).toMatchObject({
      Action: ['kms:Decrypt', 'kms:GenerateDataKey*'],
    });
    template.allResourcesProperties('AWS::Logs::LogGroup', { KmsKeyId: { 'Fn::GetAtt': [keyId, 'Arn'] } });
    template.hasOutput('AlarmTopicArn', { Value: { Ref: topicId } });
  });
});

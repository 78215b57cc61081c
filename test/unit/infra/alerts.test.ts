/**
 * The per-migration alert topics in PgferryMigration (infra/alerts.ts, issue 15, item 4): only
 * the functions and the task that publish a migration's alerts may publish, only to the topics
 * of the stack's alertTopicArns context, and ValidateSpec knows that list.
 */
import { describe, expect, it } from 'vitest';
import { lambdaFunctions } from '../../../lambdas/registry.js';
import { alertEnvironment } from '../../../platform/aws/deployment.js';
import { fargateTasks } from '../../../tasks/registry.js';
import {
  actionsOf,
  asList,
  existingVpc,
  functionRoleId,
  infraTestStacks,
  logicalId,
  resourcesOf,
  roleStatements,
  taskDefinitionsOf,
  type Resource,
  type Statement,
} from '../../support/infra.js';

const { synthStack, defaultStack } = infraTestStacks('infra-alerts');

const topics = ['arn:aws:sns:eu-west-1:123456789012:shop-alerts', 'arn:aws:sns:eu-west-1:123456789012:billing-alerts.fifo'];
const topicKey = 'arn:aws:kms:eu-west-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab';
const alertStack = () => synthStack({ alertTopicArns: topics, alertTopicKmsKeyArns: [topicKey] });

/** Every statement that allows an SNS action, with the roles of its policy. */
function snsStatements(resources: Record<string, Resource>): { roles: string[]; statement: Statement }[] {
  return Object.values(resources)
    .filter((resource) => resource.Type === 'AWS::IAM::Policy')
    .flatMap((policy) =>
      (policy.Properties.PolicyDocument.Statement as Statement[])
        .filter((statement) => actionsOf(statement).some((action) => action.startsWith('sns:')))
        .map((statement) => ({ roles: (policy.Properties.Roles as { Ref: string }[]).map((role) => role.Ref), statement })),
    );
}

describe('PgferryMigration alert topics', () => {
  it('lets the alerting functions and the replicate task publish to the listed topics only, and through SNS only with their key', () => {
    const { stack, template } = alertStack();
    const resources = resourcesOf(template);
    const publishers = [
      ...lambdaFunctions.filter((def) => def.publishesAlerts).map((def) => functionRoleId(template, logicalId(stack.migration.functions[def.name]!))),
      ...fargateTasks.filter((task) => task.publishesAlerts).map((task) => logicalId(stack.migration.taskDefinitions[task.name]!.taskRole)),
    ];
    expect(lambdaFunctions.filter((def) => def.publishesAlerts).map((def) => def.name).sort()).toEqual(['Cleanup', 'PausedStatus', 'ReplicationStatus']);
    expect(fargateTasks.filter((task) => task.publishesAlerts).map((task) => task.name)).toEqual(['Replicate']);

    for (const roleId of publishers) {
      const statements = roleStatements(template, roleId);
      expect(statements.filter((s) => actionsOf(s).some((a) => a.startsWith('sns:')))).toEqual([{ Effect: 'Allow', Action: 'sns:Publish', Resource: topics }]);
      expect(statements.filter((s) => asList(s.Resource).includes(topicKey))).toEqual([
        { Effect: 'Allow', Action: ['kms:GenerateDataKey', 'kms:Decrypt'], Resource: topicKey, Condition: { StringLike: { 'kms:ViaService': 'sns.*.amazonaws.com' } } },
      ]);
    }
    // No other role may publish anything, nor use the topics' key.
    expect([...new Set(snsStatements(resources).flatMap(({ roles }) => roles))].sort()).toEqual([...publishers].sort());
    const keyUsers = Object.values(resources)
      .filter((r) => r.Type === 'AWS::IAM::Policy' && JSON.stringify(r.Properties.PolicyDocument).includes(topicKey))
      .flatMap((r) => (r.Properties.Roles as { Ref: string }[]).map((role) => role.Ref));
    expect(keyUsers.sort()).toEqual([...publishers].sort());
  });

  it('switches the publishers to SNS and gives ValidateSpec the topics a spec may name', () => {
    const { stack, template } = alertStack();
    const resources = resourcesOf(template);
    for (const def of lambdaFunctions) {
      const variables = resources[logicalId(stack.migration.functions[def.name]!)]!.Properties.Environment.Variables as Record<string, string>;
      expect(variables[alertEnvironment.publish.name]).toBe(def.publishesAlerts ? alertEnvironment.publish.sns : undefined);
      expect(variables[alertEnvironment.allowedTopics]).toBe(def.name === 'ValidateSpec' ? JSON.stringify(topics) : undefined);
    }
    const taskDefinitions = taskDefinitionsOf(template, stack.migration);
    for (const task of fargateTasks) {
      const environment = taskDefinitions[task.name]!.Properties.ContainerDefinitions[0].Environment as { Name: string; Value: string }[];
      expect(environment.find((entry) => entry.Name === alertEnvironment.publish.name)?.Value).toBe(task.publishesAlerts ? alertEnvironment.publish.sns : undefined);
    }
  });

  it('adds an SNS endpoint to the VPC it creates with endpoints (the subnets may have no NAT), and none to a given VPC', () => {
    const endpointServices = (resources: Record<string, Resource>) =>
      Object.values(resources)
        .filter((r) => r.Type === 'AWS::EC2::VPCEndpoint' && r.Properties.VpcEndpointType === 'Interface')
        .map((r) => JSON.stringify(r.Properties.ServiceName));
    const created = resourcesOf(alertStack().template);
    expect(endpointServices(created).filter((name) => name.includes('.sns'))).toHaveLength(1);
    expect(endpointServices(resourcesOf(defaultStack().template)).filter((name) => name.includes('.sns'))).toEqual([]);
    const given = resourcesOf(synthStack({ ...existingVpc, alertTopicArns: topics }).template);
    expect(endpointServices(given)).toEqual([]);
  });

  it('grants nothing and sets nothing without alertTopicArns (ValidateSpec then refuses every alert topic)', () => {
    const { template } = defaultStack();
    const resources = resourcesOf(template);
    expect(snsStatements(resources)).toEqual([]);
    expect(JSON.stringify(resources)).not.toContain(alertEnvironment.publish.name);
    expect(JSON.stringify(resources)).not.toContain(alertEnvironment.allowedTopics);
  });

  it('refuses a context that is not a list of SNS topic ARNs, naming the key', () => {
    expect(() => synthStack({ alertTopicArns: ['arn:aws:sqs:eu-west-1:123456789012:queue'] })).toThrow(
      "Context 'alertTopicArns' must be a JSON list of SNS topic ARNs",
    );
    expect(() => synthStack({ alertTopicArns: topics, alertTopicKmsKeyArns: ['alias/sns'] })).toThrow("Context 'alertTopicKmsKeyArns' must be a JSON list of KMS key ARNs");
  });
});

/**
 * cdk-nag's AwsSolutions pack on the deployable stack: nothing unacknowledged (errors or
 * warnings) in any network variant, and every acknowledgement names a finding that exists,
 * with its reason. cdk-nag 3 is a CDK validation plugin: `validateScope` runs it on a tree.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Validations, type PolicyValidationPluginReport } from 'aws-cdk-lib';
import * as iam from 'aws-cdk-lib/aws-iam';
import { AwsSolutionsChecks } from 'cdk-nag';
import type { IConstruct } from 'constructs';
import { describe, expect, it } from 'vitest';
import { PgferryStack } from '../../infra/index.js';
import { lambdaFunctions } from '../../lambdas/registry.js';
import { fargateTasks } from '../../tasks/registry.js';
import { cdkTestApps, existingVpc } from '../support/infra.js';

const { newApp } = cdkTestApps('nag');

const secretArns = ['arn:aws:secretsmanager:eu-west-1:123456789012:secret:pgferry/source-AbCdEf'];

const variants: [string, Record<string, unknown>][] = [
  ['a new VPC (the default)', {}],
  ['a new VPC without NAT gateway, with secrets and an alert topic (its SNS endpoint)', { natGateways: 0, secretArns, alertTopicArns: ['arn:aws:sns:eu-west-1:123456789012:shop-alerts'] }],
  [
    'an existing VPC, security groups and alarm topic, and per-migration alert topics',
    {
      ...existingVpc,
      secretArns,
      alertTopicArns: ['arn:aws:sns:eu-west-1:123456789012:shop-alerts'],
      alertTopicKmsKeyArns: ['arn:aws:kms:eu-west-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab'],
    },
  ],
];

const summary = (report: PolicyValidationPluginReport) =>
  report.violations.map((v) => `${v.severity} ${v.ruleName}: ${v.violatingResources.map((r) => r.constructPath).join(', ')}`);

/** What the pack finds with every acknowledgement ignored. */
function rawFindings(scope: IConstruct): { ruleName: string; constructPath: string }[] {
  const pack = new AwsSolutionsChecks();
  (pack as unknown as { isAcknowledged: () => boolean }).isAcknowledged = () => false;
  return pack
    .validateScope(scope)
    .violations.flatMap((v) => v.violatingResources.map((r) => ({ ruleName: v.ruleName, constructPath: r.constructPath! })));
}

/** Every AwsSolutions acknowledgement in the tree: where, which finding, why. */
function acknowledgements(scope: IConstruct): { path: string; id: string; reason: string }[] {
  return scope.node.findAll().flatMap((construct) =>
    construct.node.metadata
      .filter((entry) => entry.type === Validations.ACKNOWLEDGED_RULES_METADATA_KEY)
      .flatMap((entry) => Object.entries(entry.data as Record<string, string>))
      .map(([id, reason]) => ({ path: construct.node.path, id: id.replace(/^annotation::/i, ''), reason }))
      .filter((ack) => ack.id.startsWith('AwsSolutions-')),
  );
}

describe('cdk-nag AwsSolutions', () => {
  it.each(variants)('finds no unacknowledged error or warning on a PgferryStack with %s', (_, context) => {
    const stack = new PgferryStack(newApp(context), 'Pgferry');
    const report = new AwsSolutionsChecks(undefined, { verbose: true }).validateScope(stack);
    expect(summary(report)).toEqual([]);
    expect(report.success).toBe(true);
    // Not vacuous: the pack does look at this stack.
    expect(rawFindings(stack).length).toBeGreaterThan(0);
  });

  it('acknowledges only findings that exist, on the construct that has them, each with a reason', () => {
    const stack = new PgferryStack(newApp({ secretArns }), 'Pgferry');
    const raw = rawFindings(stack);
    const acks = acknowledgements(stack);
    for (const ack of acks) {
      expect(ack.reason.length, `${ack.path} ${ack.id}`).toBeGreaterThan(40);
      const covered = raw.filter((finding) => finding.ruleName === ack.id && finding.constructPath.startsWith(`${ack.path}/`));
      expect(covered.length, `${ack.path} acknowledges ${ack.id}, which it does not have`).toBeGreaterThan(0);
    }
    // No blanket acknowledgement on the stack or the construct: each sits on a resource.
    for (const ack of acks) expect(['Pgferry', 'Pgferry/Migration']).not.toContain(ack.path);

    // The complete list, by kind: a new acknowledgement is a decision, made here in review.
    const generalize = (path: string) => {
      const name = path.replace(/^Pgferry\/Migration\//, '');
      if (lambdaFunctions.some((fn) => fn.name === name)) return '<function>';
      if (lambdaFunctions.some((fn) => `${fn.name}Role` === name)) return '<function>Role';
      if (fargateTasks.some((task) => `${task.name}TaskDefinition` === name)) return '<task>TaskDefinition';
      return name;
    };
    const kinds = new Set(acks.map((ack) => `${generalize(ack.path)}: ${ack.id.replace(/task-definition\/\w+:\*/, 'task-definition/<family>:*')}`));
    expect([...kinds].sort()).toEqual(
      [
        '<function>: AwsSolutions-L1',
        '<function>Role: AwsSolutions-IAM5[Resource::*]',
        '<task>TaskDefinition: AwsSolutions-ECS2',
        'TaskExecutionRole: AwsSolutions-IAM5[Resource::*]',
        'StateMachine/Role: AwsSolutions-IAM5[Resource::*]',
        'StateMachine/Role: AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:ecs:<AWS::Region>:<AWS::AccountId>:task-definition/<family>:*]',
        'StateMachine/Role: AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:ecs:<AWS::Region>:<AWS::AccountId>:task/*]',
        'EventDeadLetterQueue: AwsSolutions-SQS3',
      ].sort(),
    );
    expect(acks.filter((ack) => ack.id === 'AwsSolutions-L1')).toHaveLength(lambdaFunctions.length);
    expect(acks.filter((ack) => ack.id === 'AwsSolutions-ECS2')).toHaveLength(fargateTasks.length);
  });

  it('fails the synth of an app that registers the pack when a finding is not acknowledged', () => {
    const clean = newApp();
    new PgferryStack(clean, 'Pgferry');
    Validations.of(clean).addPlugins(new AwsSolutionsChecks(clean));
    const assembly = clean.synth();
    const report = JSON.parse(readFileSync(join(assembly.directory, 'validation-report.json'), 'utf8'));
    expect(report.pluginReports).toEqual([]);

    const dirty = newApp();
    const stack = new PgferryStack(dirty, 'Pgferry');
    new iam.Role(stack, 'Careless', { assumedBy: new iam.AccountRootPrincipal() }).addToPolicy(
      new iam.PolicyStatement({ actions: ['s3:*'], resources: ['*'] }),
    );
    Validations.of(dirty).addPlugins(new AwsSolutionsChecks(dirty));
    expect(() => dirty.synth()).toThrow(/AwsSolutions-IAM5\[Action::s3:\*\][\s\S]*Pgferry\/Careless/);
  });
});

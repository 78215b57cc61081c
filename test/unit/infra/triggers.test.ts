/** What starts and ends executions (infra/triggers.ts): the start and cleanup rules, the dead-letter queue, the scheduler, and the tags the CLI reads. */
import { describe, expect, it } from 'vitest';
import { resumeMigrationEvent, stateMachineTags, startMigrationEvent } from '../../../platform/aws/deployment.js';
import {
  functionRoleId,
  infraTestStacks,
  logicalId,
  only,
  type Resource,
  resourcesOf,
  roleIdOf,
  roleStatements,
  sortJson,
  stateMachineOf,
  type Statement,
} from '../../support/infra.js';

// Synth (and the whole file) must not need Docker: any attempt to use it fails.
const { defaultStack, secretStack } = infraTestStacks('infra-triggers');

describe('PgferryMigration triggers', () => {
  it('runs the Cleanup function for executions of this state machine that were stopped, timed out or failed', () => {
    const { stack, template } = secretStack();
    const rule = stack.migration.stoppedExecutionRule!;
    expect(resourcesOf(template)[logicalId(rule)]!.Properties).toMatchObject({
      EventPattern: {
        source: ['aws.states'],
        'detail-type': ['Step Functions Execution Status Change'],
        detail: { status: ['ABORTED', 'TIMED_OUT', 'FAILED'], stateMachineArn: [{ Ref: logicalId(stack.migration.stateMachine) }] },
      },
      Targets: [
        {
          Id: 'Target0',
          Arn: { 'Fn::GetAtt': [logicalId(stack.migration.functions.Cleanup!), 'Arn'] },
          DeadLetterConfig: { Arn: { 'Fn::GetAtt': [logicalId(stack.migration.deadLetterQueue), 'Arn'] } },
          RetryPolicy: { MaximumRetryAttempts: 4, MaximumEventAgeInSeconds: 7200 },
        },
      ],
    });
    template.hasResourceProperties('AWS::Lambda::Permission', {
      Action: 'lambda:InvokeFunction',
      Principal: 'events.amazonaws.com',
      SourceArn: { 'Fn::GetAtt': [logicalId(rule), 'Arn'] },
    });
    // A Cleanup that fails after delivery lands in the same alarmed queue, after Lambda's retries.
    const queueArn = { 'Fn::GetAtt': [logicalId(stack.migration.deadLetterQueue), 'Arn'] };
    template.hasResourceProperties('AWS::Lambda::EventInvokeConfig', {
      FunctionName: { Ref: logicalId(stack.migration.functions.Cleanup!) },
      MaximumRetryAttempts: 2,
      DestinationConfig: { OnFailure: { Destination: queueArn } },
    });
    const cleanupRole = functionRoleId(template, logicalId(stack.migration.functions.Cleanup!));
    expect(roleStatements(template, cleanupRole)).toContainEqual(expect.objectContaining({ Action: expect.arrayContaining(['sqs:SendMessage']), Resource: queueArn }));
  });

  it('tags the state machine, and only it, with the operator function, the scheduler role and the schedule group', () => {
    const { stack, template } = defaultStack();
    const migration = stack.migration;
    const tags = Object.fromEntries(
      (stateMachineOf(template).Properties.Tags as { Key: string; Value: unknown }[]).map((tag) => [tag.Key, tag.Value]),
    );
    expect(tags).toEqual({
      [stateMachineTags.operatorFunction]: { 'Fn::GetAtt': [logicalId(migration.operatorFunction!), 'Arn'] },
      [stateMachineTags.schedulerRole]: { 'Fn::GetAtt': [logicalId(migration.schedulerRole), 'Arn'] },
      [stateMachineTags.scheduleGroup]: stack.resolve(migration.scheduleGroup.ref),
    });
    for (const [id, resource] of Object.entries(resourcesOf(template))) {
      if (resource.Type === 'AWS::StepFunctions::StateMachine') continue;
      expect(JSON.stringify(resource.Properties?.Tags ?? []), id).not.toContain('pgferry:');
    }
  });

  it('resumes: starts an execution with {resume: true, spec: detail} as input for each resume event', () => {
    const { stack, template } = defaultStack();
    const migration = stack.migration;
    const rule = resourcesOf(template)[logicalId(migration.resumeRule)]!;
    expect(rule.Properties.EventPattern).toEqual({ source: [resumeMigrationEvent.source], 'detail-type': [resumeMigrationEvent.detailType] });
    const [target, ...others] = rule.Properties.Targets as Record<string, any>[];
    expect(others).toEqual([]);
    expect(target).toMatchObject({
      Arn: { Ref: logicalId(migration.stateMachine) },
      InputTransformer: { InputPathsMap: { detail: '$.detail' }, InputTemplate: '{"resume":true,"spec":<detail>}' },
      DeadLetterConfig: { Arn: { 'Fn::GetAtt': [logicalId(migration.deadLetterQueue), 'Arn'] } },
    });
  });

  it('starts an execution with the event detail as input for each start event, through a role that may do only that', () => {
    const { stack, template } = defaultStack();
    const migration = stack.migration;
    const rule = resourcesOf(template)[logicalId(migration.startRule)]!;
    expect(rule.Properties.EventPattern).toEqual({ source: [startMigrationEvent.source], 'detail-type': [startMigrationEvent.detailType] });
    expect(rule.Properties.EventBusName).toBeUndefined();
    const [target, ...others] = rule.Properties.Targets as Record<string, any>[];
    expect(others).toEqual([]);
    expect(target).toMatchObject({
      Arn: { Ref: logicalId(migration.stateMachine) },
      InputPath: '$.detail',
      DeadLetterConfig: { Arn: { 'Fn::GetAtt': [logicalId(migration.deadLetterQueue), 'Arn'] } },
      RetryPolicy: { MaximumRetryAttempts: 4, MaximumEventAgeInSeconds: 7200 },
    });
    const roleId = roleIdOf(target!.RoleArn);
    expect(resourcesOf(template)[roleId]!.Properties.AssumeRolePolicyDocument.Statement).toEqual([
      { Action: 'sts:AssumeRole', Effect: 'Allow', Principal: { Service: 'events.amazonaws.com' } },
    ]);
    expect(roleStatements(template, roleId)).toEqual([
      { Action: 'states:StartExecution', Effect: 'Allow', Resource: { Ref: logicalId(migration.stateMachine) } },
    ]);
  });

  it('keeps undeliverable events in an encrypted, TLS-only dead-letter queue only the three rules may write to', () => {
    const { stack, template } = defaultStack();
    const migration = stack.migration;
    const queueId = logicalId(migration.deadLetterQueue);
    expect(resourcesOf(template)[queueId]!.Properties).toEqual({ SqsManagedSseEnabled: true, MessageRetentionPeriod: 1209600 });
    const [, policy] = only(template.findResources('AWS::SQS::QueuePolicy') as Record<string, Resource>);
    const statements = policy.Properties.PolicyDocument.Statement as (Statement & { Principal: unknown })[];
    expect(statements).toContainEqual(
      expect.objectContaining({ Effect: 'Deny', Action: 'sqs:*', Condition: { Bool: { 'aws:SecureTransport': 'false' } } }),
    );
    const allowed = statements.filter((statement) => statement.Effect === 'Allow');
    expect(allowed.map((statement) => statement.Principal)).toEqual(Array(3).fill({ Service: 'events.amazonaws.com' }));
    expect(allowed.map((statement) => statement.Action)).toEqual(Array(3).fill('sqs:SendMessage'));
    expect(sortJson(allowed.map((statement) => statement.Condition))).toEqual(
      sortJson(
        [migration.startRule, migration.resumeRule, migration.stoppedExecutionRule!].map((rule) => ({ ArnEquals: { 'aws:SourceArn': { 'Fn::GetAtt': [logicalId(rule), 'Arn'] } } })),
      ),
    );
  });

  it('gives EventBridge Scheduler a schedule group and a role, for that group of this account only, that may only start this state machine', () => {
    const { stack, template } = defaultStack();
    const migration = stack.migration;
    template.resourceCountIs('AWS::Scheduler::ScheduleGroup', 1);
    const role = resourcesOf(template)[logicalId(migration.schedulerRole)]!;
    expect(role.Properties.AssumeRolePolicyDocument.Statement).toEqual([
      {
        Action: 'sts:AssumeRole',
        Effect: 'Allow',
        Principal: { Service: 'scheduler.amazonaws.com' },
        Condition: {
          StringEquals: {
            'aws:SourceAccount': { Ref: 'AWS::AccountId' },
            'aws:SourceArn': stack.resolve(migration.scheduleGroup.attrArn),
          },
        },
      },
    ]);
    expect(role.Properties.ManagedPolicyArns).toBeUndefined();
    expect(role.Properties.Policies).toBeUndefined();
    expect(roleStatements(template, logicalId(migration.schedulerRole))).toEqual([
      { Action: 'states:StartExecution', Effect: 'Allow', Resource: { Ref: logicalId(migration.stateMachine) } },
    ]);
    template.hasOutput('ScheduleGroupName', { Value: stack.resolve(migration.scheduleGroup.ref) });
    template.hasOutput('SchedulerRoleArn', { Value: { 'Fn::GetAtt': [logicalId(migration.schedulerRole), 'Arn'] } });
  });
});

/** Alarms, the dashboard and the metrics name of a deployment (infra/monitoring.ts). */
import { Stack } from 'aws-cdk-lib';
import { Template } from 'aws-cdk-lib/assertions';
import type { Construct } from 'constructs';
import { describe, expect, it } from 'vitest';
import { PgferryMigration } from '../../../infra/index.js';
import { lambdaFunctions } from '../../../lambdas/registry.js';
import { metrics } from '../../../platform/aws/deployment.js';
import {
  existingVpc,
  infraTestStacks,
  logicalId,
  only,
  render,
  type Resource,
} from '../../support/infra.js';

// Synth (and the whole file) must not need Docker: any attempt to use it fails.
const { newApp, synthStack, defaultStack, existingVpcStack } = infraTestStacks('infra-monitoring');

describe('PgferryMigration monitoring', () => {
  const alarms = (template: Template) => Object.entries(template.findResources('AWS::CloudWatch::Alarm') as Record<string, Resource>);

  it('alarms on failed and timed-out executions, lag over threshold, function errors and undelivered events, all to the topic', () => {
    const { stack, template } = defaultStack();
    const migration = stack.migration;
    const topic = { Ref: logicalId(migration.alarmTopic as Construct) };
    const all = alarms(template);
    const workflowFunctions = Object.keys(migration.functions);
    expect(all).toHaveLength(6 + workflowFunctions.length);
    for (const [id, alarm] of all) {
      expect(alarm.Properties, id).toMatchObject({
        AlarmActions: [topic],
        ComparisonOperator: 'GreaterThanOrEqualToThreshold',
        Threshold: 1,
        EvaluationPeriods: 1,
        TreatMissingData: 'notBreaching',
      });
    }
    const byId = Object.fromEntries(all);
    const stateMachine = [{ Name: 'StateMachineArn', Value: { Ref: logicalId(migration.stateMachine) } }];
    expect(byId[logicalId(migration.monitoring.executionsFailedAlarm)]!.Properties).toMatchObject({
      Namespace: 'AWS/States',
      MetricName: 'ExecutionsFailed',
      Dimensions: stateMachine,
      Statistic: 'Sum',
      Period: 60,
    });
    expect(byId[logicalId(migration.monitoring.executionsTimedOutAlarm)]!.Properties).toMatchObject({
      Namespace: 'AWS/States',
      MetricName: 'ExecutionsTimedOut',
      Dimensions: stateMachine,
      Statistic: 'Sum',
    });
    expect(byId[logicalId(migration.monitoring.replicationLagAlarm)]!.Properties).toMatchObject({
      Namespace: metrics.namespace,
      MetricName: metrics.names.lagOverThreshold,
      Dimensions: [{ Name: metrics.serviceDimension, Value: migration.serviceName }],
      Statistic: 'Maximum',
      Period: 60,
      OKActions: [topic],
    });
    expect(byId[logicalId(migration.monitoring.retainedWalAlarm)]!.Properties).toMatchObject({
      Namespace: metrics.namespace,
      MetricName: metrics.names.retainedWalOverThreshold,
      Dimensions: [{ Name: metrics.serviceDimension, Value: migration.serviceName }],
      Statistic: 'Maximum',
      Period: 60,
      OKActions: [topic],
    });
    expect(byId[logicalId(migration.monitoring.retainedWalAlarm)]!.Properties.AlarmDescription).toContain('pgferry stop SPEC --drop');
    expect(byId[logicalId(migration.monitoring.pausedAlarm)]!.Properties).toMatchObject({
      Namespace: metrics.namespace,
      MetricName: metrics.names.migrationPaused,
      Dimensions: [{ Name: metrics.serviceDimension, Value: migration.serviceName }],
      OKActions: [topic],
    });
    for (const name of workflowFunctions) {
      expect(byId[logicalId(migration.monitoring.functionErrorAlarms[name]!)]!.Properties, name).toMatchObject({
        Namespace: 'AWS/Lambda',
        MetricName: 'Errors',
        Dimensions: [{ Name: 'FunctionName', Value: { Ref: logicalId(migration.functions[name]!) } }],
        Statistic: 'Sum',
      });
    }
    expect(byId[logicalId(migration.monitoring.deadLetterAlarm)]!.Properties).toMatchObject({
      Namespace: 'AWS/SQS',
      MetricName: 'ApproximateNumberOfMessagesVisible',
      Dimensions: [{ Name: 'QueueName', Value: { 'Fn::GetAtt': [logicalId(migration.deadLetterQueue), 'QueueName'] } }],
    });
  });

  it('has a dashboard of executions, lag, rows and bytes, and the functions, for this deployment', () => {
    const { stack, template } = defaultStack();
    const migration = stack.migration;
    const [dashboardId, dashboard] = only(template.findResources('AWS::CloudWatch::Dashboard') as Record<string, Resource>);
    expect(dashboardId).toBe(logicalId(migration.dashboard));
    const body = JSON.parse(render(dashboard.Properties.DashboardBody)) as { widgets: { properties: { title: string; metrics?: unknown[][] } }[] };
    const widget = (title: string) => body.widgets.find((w) => w.properties.title === title)!.properties.metrics!;
    const names = (title: string) => widget(title).map((metric) => `${metric[0]}/${metric[1]}`);
    expect(names('Executions')).toEqual(['Started', 'Succeeded', 'Failed', 'TimedOut', 'Aborted'].map((n) => `AWS/States/Executions${n}`));
    expect(names('Replication lag (seconds)')).toEqual([`pgferry/${metrics.names.lagSeconds}`, `pgferry/${metrics.names.lagOverThreshold}`]);
    expect(names('Replication lag (bytes)')).toEqual([`pgferry/${metrics.names.lagBytes}`]);
    expect(names('Rows applied (CDC)')).toEqual([`pgferry/${metrics.names.rowsApplied}`]);
    expect(names('Rows copied (full load)')).toEqual([`pgferry/${metrics.names.rowsCopied}`]);
    expect(names('Bytes copied (full load)')).toEqual([`pgferry/${metrics.names.bytesCopied}`]);
    expect(names('Retained WAL on the source (bytes)')).toEqual([`pgferry/${metrics.names.retainedWalBytes}`, `pgferry/${metrics.names.retainedWalOverThreshold}`]);
    for (const title of ['Replication lag (seconds)', 'Rows applied (CDC)', 'Bytes copied (full load)', 'Retained WAL on the source (bytes)']) {
      for (const metric of widget(title)) expect(metric.slice(2, 4)).toEqual([metrics.serviceDimension, migration.serviceName]);
    }
    expect(names('Lambda errors')).toEqual(lambdaFunctions.map(() => 'AWS/Lambda/Errors'));
    expect(names('Lambda duration (p99)')).toEqual(lambdaFunctions.map(() => 'AWS/Lambda/Duration'));
    template.hasOutput('DashboardName', { Value: { Ref: dashboardId } });
    template.hasOutput('MetricsServiceName', { Value: migration.serviceName });
  });

  it('sends the alarms to an existing topic from context and subscribes the e-mail addresses to it', () => {
    const { template } = existingVpcStack();
    template.resourceCountIs('AWS::SNS::Topic', 0);
    for (const [id, alarm] of alarms(template)) expect(alarm.Properties.AlarmActions, id).toEqual([existingVpc.alarmTopicArn]);
    template.hasResourceProperties('AWS::SNS::Subscription', { Protocol: 'email', Endpoint: 'ops@example.com', TopicArn: existingVpc.alarmTopicArn });
    template.hasOutput('AlarmTopicArn', { Value: existingVpc.alarmTopicArn });
    // No topic to encrypt: the key serves the log groups only.
    const [, key] = only(template.findResources('AWS::KMS::Key') as Record<string, Resource>);
    expect(JSON.stringify(key.Properties.KeyPolicy)).not.toContain('cloudwatch.amazonaws.com');
  });

  it('subscribes e-mail addresses to the new topic', () => {
    const { stack, template } = synthStack({ alarmEmails: JSON.stringify(['a@example.com', 'b@example.com']) });
    const topic = { Ref: logicalId(stack.migration.alarmTopic as Construct) };
    template.resourceCountIs('AWS::SNS::Subscription', 2);
    for (const email of ['a@example.com', 'b@example.com']) {
      template.hasResourceProperties('AWS::SNS::Subscription', { Protocol: 'email', Endpoint: email, TopicArn: topic });
    }
  });

  it('names each deployment uniquely in the metrics, or as told', () => {
    const stack = new Stack(newApp(), 'Two');
    const a = new PgferryMigration(stack, 'A');
    const b = new PgferryMigration(stack, 'B', { serviceName: 'pgferry-prod' });
    expect(a.serviceName).toMatch(/^pgferry-[0-9a-f]{8}$/);
    expect(b.serviceName).toBe('pgferry-prod');
    expect(new PgferryMigration(stack, 'C').serviceName).not.toBe(a.serviceName);
    expect(defaultStack().stack.migration.serviceName).toBe(synthStack().stack.migration.serviceName);
  });
});

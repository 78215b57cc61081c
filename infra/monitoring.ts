/**
 * Alarms and the dashboard of one pgferry deployment. The Step Functions and Lambda metrics come
 * from AWS; the replication and copy metrics are the tasks' own (embedded metric format in their
 * logs, platform/aws/deployment.ts names them), under the deployment's service dimension.
 */
import { Duration } from 'aws-cdk-lib';
import * as cloudwatch from 'aws-cdk-lib/aws-cloudwatch';
import * as cloudwatchActions from 'aws-cdk-lib/aws-cloudwatch-actions';
import type * as lambda from 'aws-cdk-lib/aws-lambda';
import * as sns from 'aws-cdk-lib/aws-sns';
import * as subscriptions from 'aws-cdk-lib/aws-sns-subscriptions';
import type * as sqs from 'aws-cdk-lib/aws-sqs';
import type * as sfn from 'aws-cdk-lib/aws-stepfunctions';
import { Construct } from 'constructs';
import { metrics } from '../platform/aws/deployment.js';
import type { MigrationEncryption } from './encryption.js';

/**
 * Where the alarms notify: `given`, or a new topic `AlarmTopic` in `scope`, encrypted with the
 * deployment's key (which CloudWatch may then use); `emails` are subscribed to it.
 */
export function migrationAlarmTopic(
  scope: Construct,
  props: { given?: sns.ITopic; encryption: MigrationEncryption; emails: readonly string[] },
): sns.ITopic {
  let topic = props.given;
  if (!topic) {
    topic = new sns.Topic(scope, 'AlarmTopic', {
      displayName: 'pgferry alarms',
      masterKey: props.encryption.key,
      enforceSSL: true,
    });
    props.encryption.allowCloudWatchAlarms();
  }
  for (const email of props.emails) topic.addSubscription(new subscriptions.EmailSubscription(email));
  return topic;
}

export interface PgferryMonitoringProps {
  readonly stateMachine: sfn.StateMachine;
  /** By registry name. */
  readonly functions: Readonly<Record<string, lambda.IFunction>>;
  /** Where events that EventBridge could not deliver end up. */
  readonly deadLetterQueue: sqs.IQueue;
  /** The value of the `service` dimension of the tasks' metrics (their POWERTOOLS_SERVICE_NAME). */
  readonly serviceName: string;
  readonly alarmTopic: sns.ITopic;
}

const MINUTE = Duration.minutes(1);
const FIVE_MINUTES = Duration.minutes(5);
const GRAPH_WIDTH = 8;

const functionErrors = (fn: lambda.IFunction, label?: string) => fn.metricErrors({ period: FIVE_MINUTES, statistic: cloudwatch.Stats.SUM, label });

/** One of the tasks' own metrics, under the deployment's service dimension. (A label would make an alarm render its metric as a metric-math list.) */
const taskMetric = (serviceName: string, metricName: string, statistic: string, label?: string) =>
  new cloudwatch.Metric({
    namespace: metrics.namespace,
    metricName,
    dimensionsMap: { [metrics.serviceDimension]: serviceName },
    statistic,
    period: MINUTE,
    label,
  });

const graph = (title: string, left: cloudwatch.IMetric[], right?: cloudwatch.IMetric[]) => new cloudwatch.GraphWidget({ title, width: GRAPH_WIDTH, left, right });

export class PgferryMonitoring extends Construct {
  readonly executionsFailedAlarm: cloudwatch.Alarm;
  readonly executionsTimedOutAlarm: cloudwatch.Alarm;
  /** In alarm while a migration's lag is over its spec's alerts.lagThresholdSeconds. */
  readonly replicationLagAlarm: cloudwatch.Alarm;
  /** In alarm while a migration's slot holds back more WAL than its spec's cdc.maxRetainedWal (or nears max_slot_wal_keep_size), or is lost. */
  readonly retainedWalAlarm: cloudwatch.Alarm;
  /** In alarm while a migration is paused (a failure after its slot existed, or a stop). */
  readonly pausedAlarm: cloudwatch.Alarm;
  /** By registry name. */
  readonly functionErrorAlarms: Readonly<Record<string, cloudwatch.Alarm>>;
  readonly deadLetterAlarm: cloudwatch.Alarm;
  readonly dashboard: cloudwatch.Dashboard;

  private readonly notify: cloudwatchActions.SnsAction;
  private readonly serviceName: string;

  constructor(scope: Construct, id: string, props: PgferryMonitoringProps) {
    super(scope, id);
    const { stateMachine, serviceName } = props;
    this.notify = new cloudwatchActions.SnsAction(props.alarmTopic);
    this.serviceName = serviceName;

    this.executionsFailedAlarm = this.atLeastOnce(
      'ExecutionsFailed',
      stateMachine.metricFailed({ period: MINUTE, statistic: cloudwatch.Stats.SUM }),
      'a migration failed (its Cleanup ran; the execution says why).',
    );
    this.executionsTimedOutAlarm = this.atLeastOnce(
      'ExecutionsTimedOut',
      stateMachine.metricTimedOut({ period: MINUTE, statistic: cloudwatch.Stats.SUM }),
      'a migration timed out.',
    );
    // 1 while some migration's lag is over its own threshold: the threshold lives in the spec,
    // so the tasks compare and the alarm only watches the outcome.
    this.replicationLagAlarm = this.atLeastOnce(
      'ReplicationLag',
      taskMetric(serviceName, metrics.names.lagOverThreshold, cloudwatch.Stats.MAXIMUM),
      "replication lag is over the spec's alerts.lagThresholdSeconds.",
    );
    this.replicationLagAlarm.addOkAction(this.notify);
    // The same for the WAL the slot holds back on the source: the tasks compare it with the spec's threshold.
    this.retainedWalAlarm = this.atLeastOnce(
      'RetainedWal',
      taskMetric(serviceName, metrics.names.retainedWalOverThreshold, cloudwatch.Stats.MAXIMUM),
      "a replication slot holds back more WAL on the source than the spec's cdc.maxRetainedWal (or nears max_slot_wal_keep_size), or was lost: resume or cut over soon, raise max_slot_wal_keep_size, or abandon with pgferry stop SPEC --drop.",
    );
    this.retainedWalAlarm.addOkAction(this.notify);
    this.pausedAlarm = this.atLeastOnce(
      'MigrationPaused',
      taskMetric(serviceName, metrics.names.migrationPaused, cloudwatch.Stats.MAXIMUM),
      'a migration is paused, its slot kept: see its cause with pgferry status, put it right, then pgferry resume (or abandon with pgferry stop --drop).',
    );
    this.pausedAlarm.addOkAction(this.notify);

    const functionErrorAlarms: Record<string, cloudwatch.Alarm> = {};
    for (const [name, fn] of Object.entries(props.functions)) {
      functionErrorAlarms[name] = this.atLeastOnce(`${name}Errors`, functionErrors(fn), `the ${name} function failed.`);
    }
    this.functionErrorAlarms = functionErrorAlarms;
    this.deadLetterAlarm = this.atLeastOnce(
      'UndeliveredEvents',
      props.deadLetterQueue.metricApproximateNumberOfMessagesVisible({ period: FIVE_MINUTES, statistic: cloudwatch.Stats.MAXIMUM }),
      'EventBridge could not deliver an event (a start or a cleanup): it waits in the dead-letter queue.',
    );
    this.dashboard = this.createDashboard(props);
  }

  private atLeastOnce(alarmId: string, metric: cloudwatch.IMetric, description: string): cloudwatch.Alarm {
    const alarm = new cloudwatch.Alarm(this, alarmId, {
      metric,
      threshold: 1,
      comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
      evaluationPeriods: 1,
      treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
      alarmDescription: `pgferry (${this.serviceName}): ${description}`,
    });
    alarm.addAlarmAction(this.notify);
    return alarm;
  }

  private createDashboard({ stateMachine, functions: byName }: PgferryMonitoringProps): cloudwatch.Dashboard {
    const executions = (label: string, metric: (props: cloudwatch.MetricOptions) => cloudwatch.Metric) =>
      metric({ period: FIVE_MINUTES, statistic: cloudwatch.Stats.SUM, label });
    const task = (metricName: string, statistic: string, label: string) => taskMetric(this.serviceName, metricName, statistic, label);
    const functions = Object.entries(byName);
    return new cloudwatch.Dashboard(this, 'Dashboard', {
      defaultInterval: Duration.hours(3),
      widgets: [
        [
          graph('Executions', [
            executions('Started', (o) => stateMachine.metricStarted(o)),
            executions('Succeeded', (o) => stateMachine.metricSucceeded(o)),
            executions('Failed', (o) => stateMachine.metricFailed(o)),
            executions('Timed out', (o) => stateMachine.metricTimedOut(o)),
            executions('Aborted', (o) => stateMachine.metricAborted(o)),
          ]),
          graph(
            'Replication lag (seconds)',
            [task(metrics.names.lagSeconds, cloudwatch.Stats.MAXIMUM, 'Lag seconds')],
            [task(metrics.names.lagOverThreshold, cloudwatch.Stats.MAXIMUM, 'Over threshold')],
          ),
          graph('Replication lag (bytes)', [task(metrics.names.lagBytes, cloudwatch.Stats.MAXIMUM, 'Lag bytes')]),
        ],
        [
          graph('Rows applied (CDC)', [task(metrics.names.rowsApplied, cloudwatch.Stats.SUM, 'Rows applied')]),
          graph('Rows copied (full load)', [task(metrics.names.rowsCopied, cloudwatch.Stats.SUM, 'Rows copied')]),
          graph('Bytes copied (full load)', [task(metrics.names.bytesCopied, cloudwatch.Stats.SUM, 'Bytes copied')]),
        ],
        [
          graph(
            'Retained WAL on the source (bytes)',
            [task(metrics.names.retainedWalBytes, cloudwatch.Stats.MAXIMUM, 'Retained WAL bytes')],
            [task(metrics.names.retainedWalOverThreshold, cloudwatch.Stats.MAXIMUM, 'Over threshold')],
          ),
        ],
        [
          new cloudwatch.GraphWidget({ title: 'Lambda errors', width: 12, left: functions.map(([name, fn]) => functionErrors(fn, name)) }),
          new cloudwatch.GraphWidget({
            title: 'Lambda duration (p99)',
            width: 12,
            left: functions.map(([name, fn]) => fn.metricDuration({ period: FIVE_MINUTES, statistic: cloudwatch.Stats.p(99), label: name })),
          }),
        ],
        [
          new cloudwatch.AlarmStatusWidget({
            title: 'Alarms',
            width: 24,
            alarms: [this.executionsFailedAlarm, this.executionsTimedOutAlarm, this.replicationLagAlarm, this.retainedWalAlarm, this.pausedAlarm, this.deadLetterAlarm, ...Object.values(this.functionErrorAlarms)],
          }),
        ],
      ],
    });
  }
}

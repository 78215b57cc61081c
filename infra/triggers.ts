/**
 * What starts and ends PgferryMigration's executions from outside: an EventBridge rule per start
 * event, a schedule group and role for `pgferry schedule`, a rule that runs Cleanup after
 * executions that did not, and the dead-letter queue of all of them.
 */
import { Duration, Stack } from 'aws-cdk-lib';
import * as events from 'aws-cdk-lib/aws-events';
import * as targets from 'aws-cdk-lib/aws-events-targets';
import * as iam from 'aws-cdk-lib/aws-iam';
import type * as lambda from 'aws-cdk-lib/aws-lambda';
import * as destinations from 'aws-cdk-lib/aws-lambda-destinations';
import * as scheduler from 'aws-cdk-lib/aws-scheduler';
import * as sqs from 'aws-cdk-lib/aws-sqs';
import type * as sfn from 'aws-cdk-lib/aws-stepfunctions';
import type { Construct } from 'constructs';
import { resumeMigrationEvent, startMigrationEvent } from '../platform/aws/deployment.js';
import { acknowledge } from './nag.js';

export interface MigrationTriggersProps {
  readonly stateMachine: sfn.StateMachine;
  /** The registry's Cleanup function, if it has one. */
  readonly cleanup?: lambda.IFunction;
}

/**
 * Builds into the scope it is given (no construct level of its own, so the logical IDs stay
 * those of PgferryMigration's direct children): `EventDeadLetterQueue`,
 * `CleanupStoppedExecutions`, `StartFromEvent`, `ScheduleGroup` and `SchedulerRole`.
 */
export class MigrationTriggers {
  /** Events the rules could not deliver, and failed Cleanup invocations (encrypted, TLS only). */
  readonly deadLetterQueue: sqs.Queue;
  /** Runs Cleanup for executions that were stopped, timed out or failed (undefined without a Cleanup function). */
  readonly stoppedExecutionRule?: events.Rule;
  /** Starts an execution, the event's detail as input, for each `startMigrationEvent` on the default bus. */
  readonly startRule: events.Rule;
  /** Starts an execution that resumes the paused run the event's detail (its spec) names, for each `resumeMigrationEvent`. */
  readonly resumeRule: events.Rule;
  /** EventBridge Scheduler schedules of `pgferry schedule` go in this group. */
  readonly scheduleGroup: scheduler.CfnScheduleGroup;
  /** The role those schedules run with: it may start executions of this state machine only. */
  readonly schedulerRole: iam.Role;

  constructor(scope: Construct, props: MigrationTriggersProps) {
    const { stateMachine, cleanup } = props;
    this.deadLetterQueue = new sqs.Queue(scope, 'EventDeadLetterQueue', {
      encryption: sqs.QueueEncryption.SQS_MANAGED,
      enforceSSL: true,
      retentionPeriod: Duration.days(14),
    });
    acknowledge(this.deadLetterQueue, 'SQS3', 'This queue is itself the dead-letter queue of the EventBridge rule targets and of failed Cleanup invocations; an alarm watches it.');

    // A stopped, timed-out or failed execution may not have run Cleanup (a failure the ASL does
    // not catch ends the execution at once): this rule runs it, so no replication slot,
    // publication or cutover fence outlives the run. Cleanup is idempotent, so running it again
    // after an execution whose Cleanup state did run is harmless.
    if (cleanup) {
      // The rule's queue catches failed deliveries only; a Cleanup that fails after delivery is
      // retried by Lambda and then lands in the same alarmed queue (recover with pgferry stop ARN).
      cleanup.configureAsyncInvoke({ retryAttempts: 2, onFailure: new destinations.SqsDestination(this.deadLetterQueue) });
      this.stoppedExecutionRule = new events.Rule(scope, 'CleanupStoppedExecutions', {
        description: 'pgferry: runs Cleanup for executions that were stopped, timed out or failed',
        eventPattern: {
          source: ['aws.states'],
          detailType: ['Step Functions Execution Status Change'],
          detail: { status: ['ABORTED', 'TIMED_OUT', 'FAILED'], stateMachineArn: [stateMachine.stateMachineArn] },
        },
        targets: [
          new targets.LambdaFunction(cleanup, { retryAttempts: 4, maxEventAge: Duration.hours(2), deadLetterQueue: this.deadLetterQueue }),
        ],
      });
    }

    this.startRule = new events.Rule(scope, 'StartFromEvent', {
      description: `pgferry: starts a migration for each '${startMigrationEvent.detailType}' event from '${startMigrationEvent.source}', the event's detail as the spec`,
      eventPattern: { source: [startMigrationEvent.source], detailType: [startMigrationEvent.detailType] },
      targets: [
        // The target's role may start executions of this state machine only.
        new targets.SfnStateMachine(stateMachine, {
          input: events.RuleTargetInput.fromEventPath('$.detail'),
          retryAttempts: 4,
          maxEventAge: Duration.hours(2),
          deadLetterQueue: this.deadLetterQueue,
        }),
      ],
    });

    this.resumeRule = new events.Rule(scope, 'ResumeFromEvent', {
      description: `pgferry: resumes a paused migration for each '${resumeMigrationEvent.detailType}' event from '${resumeMigrationEvent.source}', the event's detail as the spec`,
      eventPattern: { source: [resumeMigrationEvent.source], detailType: [resumeMigrationEvent.detailType] },
      targets: [
        new targets.SfnStateMachine(stateMachine, {
          input: events.RuleTargetInput.fromObject({ resume: true, spec: events.EventField.fromPath('$.detail') }),
          retryAttempts: 4,
          maxEventAge: Duration.hours(2),
          deadLetterQueue: this.deadLetterQueue,
        }),
      ],
    });

    // `pgferry schedule` creates one-time schedules in this group that run with this role.
    this.scheduleGroup = new scheduler.CfnScheduleGroup(scope, 'ScheduleGroup', {});
    this.schedulerRole = new iam.Role(scope, 'SchedulerRole', {
      assumedBy: new iam.ServicePrincipal('scheduler.amazonaws.com', {
        // Only schedules of this group may use it (as aws-scheduler-targets' own roles are scoped).
        conditions: { StringEquals: { 'aws:SourceAccount': Stack.of(scope).account, 'aws:SourceArn': this.scheduleGroup.attrArn } },
      }),
      description: 'pgferry: EventBridge Scheduler starts scheduled migrations',
    });
    stateMachine.grantStartExecution(this.schedulerRole);
  }
}

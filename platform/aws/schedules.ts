/**
 * `pgferry schedule`: an EventBridge Scheduler schedule that starts an execution of the state
 * machine once, at a given time, and then deletes itself.
 */
import { CreateScheduleCommand, SchedulerClient } from '@aws-sdk/client-scheduler';
import { isRfc3339Timestamp, type MigrationSpec } from '../../engine/spec/index.js';
import { InvalidArgumentError, parseStateMachineArn } from './arns.js';
import { readTags, requireTag, send } from './calls.js';
import { isoSeconds, scheduleName } from './names.js';

/** `--at`: an RFC 3339 timestamp with a zone, in the future; second precision (what `at()` takes). */
export function parseScheduleTime(value: string, now: Date): Date {
  const example = 'e.g. 2026-12-01T02:00:00Z or 2026-12-01T04:00:00+02:00';
  const at = new Date(value.toUpperCase());
  if (!isRfc3339Timestamp(value) || Number.isNaN(at.getTime())) {
    throw new InvalidArgumentError(`--at: ${JSON.stringify(value)} is not an RFC 3339 timestamp with a time zone (${example}).`);
  }
  at.setUTCMilliseconds(0);
  if (at.getTime() <= now.getTime()) {
    throw new InvalidArgumentError(`--at: ${JSON.stringify(value)} is in the past (it is now ${isoSeconds(now)}).`);
  }
  return at;
}

/** at(yyyy-mm-ddThh:mm:ss), read in the schedule's time zone, which is UTC. */
function atExpression(at: Date): string {
  return `at(${at.toISOString().slice(0, 19)})`;
}

export interface ScheduledMigration {
  scheduleName: string;
  scheduleArn: string;
  groupName: string;
  at: Date;
  region: string;
}

export async function scheduleMigration(options: { stateMachineArn: string; spec: MigrationSpec; input: unknown; at: Date }): Promise<ScheduledMigration> {
  const stateMachine = parseStateMachineArn(options.stateMachineArn);
  const tags = await readTags(stateMachine);
  const roleArn = requireTag(tags, 'schedulerRole', stateMachine);
  const groupName = requireTag(tags, 'scheduleGroup', stateMachine);
  const name = scheduleName(options.spec.name, options.at);
  const response = await send(
    {
      action: `create the schedule ${name}`,
      permission: `scheduler:CreateSchedule and iam:PassRole on ${roleArn}`,
      resource: { arn: `schedule group ${groupName}`, region: stateMachine.region, account: stateMachine.account },
      notFound: `the schedule group ${groupName} does not exist; redeploy the pgferry stack`,
      conflict: `a schedule named ${name} already exists in group ${groupName}: this migration is already scheduled for that time`,
    },
    () =>
      new SchedulerClient({ region: stateMachine.region }).send(
        new CreateScheduleCommand({
          Name: name,
          GroupName: groupName,
          ScheduleExpression: atExpression(options.at),
          ScheduleExpressionTimezone: 'UTC',
          FlexibleTimeWindow: { Mode: 'OFF' },
          Target: { Arn: stateMachine.arn, RoleArn: roleArn, Input: JSON.stringify(options.input) },
          ActionAfterCompletion: 'DELETE',
          Description: `pgferry migration ${options.spec.name}`,
        }),
      ),
  );
  return { scheduleName: name, scheduleArn: response.ScheduleArn!, groupName, at: options.at, region: stateMachine.region };
}

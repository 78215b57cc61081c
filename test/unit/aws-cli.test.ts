import { InvokeCommand, LambdaClient, type InvokeCommandOutput } from '@aws-sdk/client-lambda';
import { CreateScheduleCommand, SchedulerClient } from '@aws-sdk/client-scheduler';
import {
  DescribeExecutionCommand,
  ExecutionAlreadyExists,
  GetExecutionHistoryCommand,
  ListTagsForResourceCommand,
  SFNClient,
  StartExecutionCommand,
  StateMachineDoesNotExist,
  StopExecutionCommand,
} from '@aws-sdk/client-sfn';
import { mockClient } from 'aws-sdk-client-mock';
import { afterAll, afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { formatStatus } from '../../bin/format.js';
import type { MigrationStatus } from '../../engine/status.js';
import { stateMachineTags } from '../../platform/aws/deployment.js';
import { runCli as run } from '../support/cli.js';
import { scratchDir } from '../support/clusters.js';
import { replicationStatusRow } from '../support/replication-status.js';

const scratch = scratchDir('aws-cli-test');
afterAll(() => scratch.remove());

const sfn = mockClient(SFNClient);
const lambda = mockClient(LambdaClient);
const scheduler = mockClient(SchedulerClient);

const NOW = new Date('2026-11-20T09:30:15.250Z');
beforeEach(() => {
  sfn.reset();
  lambda.reset();
  scheduler.reset();
  vi.useFakeTimers({ toFake: ['Date'] });
  vi.setSystemTime(NOW);
});
afterEach(() => vi.useRealTimers());

const ACCOUNT = '123456789012';
const STATE_MACHINE = `arn:aws:states:eu-west-1:${ACCOUNT}:stateMachine:PgferryMigration`;
const EXECUTION = `arn:aws:states:eu-west-1:${ACCOUNT}:execution:PgferryMigration:orders-move-20261120T093015Z`;
const OPERATOR = `arn:aws:lambda:eu-west-1:${ACCOUNT}:function:pgferry-operator`;
const SCHEDULER_ROLE = `arn:aws:iam::${ACCOUNT}:role/pgferry-scheduler`;
const SOURCE_SECRET = `arn:aws:secretsmanager:eu-west-1:${ACCOUNT}:secret:pgferry/source-AbCdEf`;
const TARGET_SECRET = `arn:aws:secretsmanager:eu-west-1:${ACCOUNT}:secret:pgferry/target-GhIjKl`;

const awsSpec = { name: 'orders-move', mode: 'full+cdc', source: { secret: SOURCE_SECRET }, target: { secret: TARGET_SECRET, database: 'orders' } };

const awsError = (name: string, message = `${name} from AWS`) => Object.assign(new Error(message), { name, $metadata: {} });

const deploymentTags = [
  { key: stateMachineTags.operatorFunction, value: OPERATOR },
  { key: stateMachineTags.schedulerRole, value: SCHEDULER_ROLE },
  { key: stateMachineTags.scheduleGroup, value: 'pgferry-schedules' },
];

/** Lambda's Invoke answers with bytes; the SDK wraps them in a Uint8Array subclass. */
const lambdaPayload = (value: unknown) => Buffer.from(JSON.stringify(value)) as unknown as InvokeCommandOutput['Payload'];

function givenExecution(status: string, extra: Record<string, unknown> = {}) {
  sfn.on(DescribeExecutionCommand, { executionArn: EXECUTION }).resolves({
    executionArn: EXECUTION,
    stateMachineArn: STATE_MACHINE,
    name: 'orders-move-20261120T093015Z',
    status: status as never,
    startDate: new Date('2026-11-20T09:30:16Z'),
    input: JSON.stringify(awsSpec),
    ...extra,
  });
  sfn.on(ListTagsForResourceCommand, { resourceArn: STATE_MACHINE }).resolves({ tags: deploymentTags });
}

const replicating: MigrationStatus = {
  name: 'orders-move',
  phase: 'replicate',
  error: null,
  tables: [{ table: 'public.orders', unitsDone: 4, units: 4, rows: 120_000, bytes: 9_000_000 }],
  replication: replicationStatusRow({
    slotName: 'pgferry_orders_move',
    publicationName: 'pgferry_orders_move',
    transactionsApplied: 310,
    rowsApplied: 4_200,
    sourceLsn: '0/2000100',
    heartbeatAgeSeconds: 1.2,
    unhealthySeconds: 1.2,
    liveCompared: true,
    lagBytes: 256,
    lagSeconds: 0.4,
    rowsPerSecond: 850,
    streamingSince: new Date('2026-11-20T10:00:00Z'),
  }),
};
/** What the CLI receives: the status after a trip through JSON (dates become strings). */
const replicatingAsSent = JSON.parse(JSON.stringify(replicating)) as MigrationStatus;

describe('pgferry start', () => {
  it('starts an execution named after the spec and the UTC time, with the spec file as its input', async () => {
    const path = scratch.writeJson('start.json', awsSpec);
    sfn.on(StartExecutionCommand).resolves({ executionArn: EXECUTION, startDate: NOW });

    const result = await run('start', path, '--state-machine', STATE_MACHINE);

    expect(result).toMatchObject({ code: 0, stderr: '' });
    const calls = sfn.commandCalls(StartExecutionCommand);
    expect(calls).toHaveLength(1);
    const input = calls[0]!.args[0].input;
    expect(input.stateMachineArn).toBe(STATE_MACHINE);
    expect(input.name).toBe('orders-move-20261120T093015Z');
    expect(JSON.parse(input.input!)).toEqual(awsSpec); // as written: no defaults filled in
    expect(await calls[0]!.thisValue.config.region()).toBe('eu-west-1');
    expect(result.stdout).toContain('execution orders-move-20261120T093015Z');
    expect(result.stdout).toContain(`  ${EXECUTION}\n`);
    expect(result.stdout).toContain(`pgferry status ${EXECUTION}`);
    expect(result.stdout).toContain(`pgferry cutover ${EXECUTION}`);
    expect(result.stdout).toContain(`pgferry stop ${EXECUTION}`);
    expect(result.stdout).not.toContain('waits until');
  });

  it('says that an execution with startAt waits until then', async () => {
    const path = scratch.writeJson('start-at.json', { ...awsSpec, startAt: '2026-11-21T22:00:00+01:00' });
    sfn.on(StartExecutionCommand).resolves({ executionArn: EXECUTION, startDate: NOW });
    const result = await run('start', path, '--state-machine', STATE_MACHINE);
    expect(result.code).toBe(0);
    expect(result.stdout).toContain("It waits until 2026-11-21T22:00:00+01:00 (the spec's startAt)");
  });

  it('refuses file: and env: secrets, naming each field, with the other problems of the spec', async () => {
    const path = scratch.writeJson('local-secrets.json', { ...awsSpec, mode: 'ful', source: { secret: 'file:./source.json' }, target: { secret: 'env:TARGET' } });
    const result = await run('start', path, '--state-machine', STATE_MACHINE);
    expect(result.code).toBe(2);
    expect(result.stderr).toContain('The migration spec has 3 problems:');
    expect(result.stderr).toContain('- mode: must be one of');
    expect(result.stderr).toContain(
      '- source.secret: on AWS this must be a Secrets Manager ARN (arn:aws:secretsmanager:…); "file:…" only works with "pgferry run"',
    );
    expect(result.stderr).toContain('- target.secret: on AWS this must be a Secrets Manager ARN (arn:aws:secretsmanager:…); "env:…" only works with "pgferry run"');
    expect(sfn.commandCalls(StartExecutionCommand)).toHaveLength(0);
  });

  it('exits 2 on a missing or malformed --state-machine, naming it', async () => {
    const path = scratch.writeJson('start-usage.json', awsSpec);
    expect(await run('start', path)).toMatchObject({ code: 2, stderr: expect.stringContaining('pgferry start needs --state-machine') });
    const wrong = await run('start', path, '--state-machine', OPERATOR);
    expect(wrong.code).toBe(2);
    expect(wrong.stderr).toContain(`--state-machine: "${OPERATOR}" is not a Step Functions state machine ARN`);
    expect(await run('start', path, '--state-machine', STATE_MACHINE, '--at', '2027-01-01T00:00:00Z')).toMatchObject({
      code: 2,
      stderr: expect.stringContaining('pgferry start does not take --at'),
    });
    expect(sfn.calls()).toHaveLength(0);
  });

  it.each([
    [new StateMachineDoesNotExist({ message: 'State Machine Does Not Exist', $metadata: {} }), `state machine ${STATE_MACHINE} does not exist; check the ARN (the stack's StateMachineArn output)`],
    [new ExecutionAlreadyExists({ message: 'Execution Already Exists', $metadata: {} }), 'an execution named orders-move-20261120T093015Z already exists'],
    [awsError('AccessDeniedException', 'User is not authorized to perform: states:StartExecution'), `credentials are for account ${ACCOUNT}, region eu-west-1 and that they allow states:StartExecution`],
    [awsError('CredentialsProviderError', 'Could not load credentials from any providers'), 'no AWS credentials found. Set AWS_PROFILE'],
    [awsError('ExpiredTokenException', 'The security token included in the request is expired'), 'They may have expired'],
  ])('explains %s and exits 1', async (error, explanation) => {
    const path = scratch.writeJson('start-error.json', awsSpec);
    sfn.on(StartExecutionCommand).rejects(error);
    const result = await run('start', path, '--state-machine', STATE_MACHINE);
    expect(result.code).toBe(1);
    expect(result.stderr).toContain('Could not start an execution of PgferryMigration');
    expect(result.stderr).toContain(explanation);
  });
});

describe('pgferry schedule', () => {
  it('creates a one-time schedule in UTC with the role and group from the state machine tags', async () => {
    const path = scratch.writeJson('schedule.json', awsSpec);
    sfn.on(ListTagsForResourceCommand, { resourceArn: STATE_MACHINE }).resolves({ tags: deploymentTags });
    const scheduleArn = `arn:aws:scheduler:eu-west-1:${ACCOUNT}:schedule/pgferry-schedules/orders-move-20261201T020000Z`;
    scheduler.on(CreateScheduleCommand).resolves({ ScheduleArn: scheduleArn });

    const result = await run('schedule', path, '--at', '2026-12-01T04:00:00+02:00', '--state-machine', STATE_MACHINE);

    expect(result).toMatchObject({ code: 0, stderr: '' });
    const calls = scheduler.commandCalls(CreateScheduleCommand);
    expect(calls).toHaveLength(1);
    const input = calls[0]!.args[0].input;
    expect(input).toMatchObject({
      Name: 'orders-move-20261201T020000Z',
      GroupName: 'pgferry-schedules',
      ScheduleExpression: 'at(2026-12-01T02:00:00)',
      ScheduleExpressionTimezone: 'UTC',
      FlexibleTimeWindow: { Mode: 'OFF' },
      Target: { Arn: STATE_MACHINE, RoleArn: SCHEDULER_ROLE },
      ActionAfterCompletion: 'DELETE',
    });
    expect(JSON.parse(input.Target!.Input!)).toEqual(awsSpec);
    expect(await calls[0]!.thisValue.config.region()).toBe('eu-west-1');
    expect(result.stdout).toContain('Scheduled migration orders-move to start at 2026-12-01T02:00:00Z (UTC)');
    expect(result.stdout).toContain('schedule orders-move-20261201T020000Z in group pgferry-schedules');
    expect(result.stdout).toContain(scheduleArn);
  });

  it('keeps schedule names within 64 characters', async () => {
    const name = `a${'b'.repeat(49)}`;
    const path = scratch.writeJson('schedule-long.json', { ...awsSpec, name });
    sfn.on(ListTagsForResourceCommand).resolves({ tags: deploymentTags });
    scheduler.on(CreateScheduleCommand).resolves({ ScheduleArn: 'arn:aws:scheduler:eu-west-1:123456789012:schedule/g/x' });
    expect((await run('schedule', path, '--at', '2026-12-01T02:00:00Z', '--state-machine', STATE_MACHINE)).code).toBe(0);
    const scheduled = scheduler.commandCalls(CreateScheduleCommand)[0]!.args[0].input.Name!;
    expect(scheduled).toHaveLength(64);
    expect(scheduled).toBe(`${name.slice(0, 47)}-20261201T020000Z`);
  });

  it.each([
    ['2026-11-20T09:30:00Z', 'is in the past (it is now 2026-11-20T09:30:15Z)'],
    ['2026-12-01T02:00:00', 'is not an RFC 3339 timestamp with a time zone'],
    ['2026-02-30T02:00:00Z', 'is not an RFC 3339 timestamp with a time zone'],
    ['next tuesday', 'is not an RFC 3339 timestamp with a time zone'],
  ])('refuses --at %s with exit 2', async (time, message) => {
    const path = scratch.writeJson('schedule-time.json', awsSpec);
    const result = await run('schedule', path, '--at', time, '--state-machine', STATE_MACHINE);
    expect(result.code).toBe(2);
    expect(result.stderr).toContain(`--at: "${time}"`);
    expect(result.stderr).toContain(message);
    expect(sfn.calls()).toHaveLength(0);
    expect(scheduler.calls()).toHaveLength(0);
  });

  it('refuses a state machine that pgferry did not deploy (no tags)', async () => {
    const path = scratch.writeJson('schedule-untagged.json', awsSpec);
    sfn.on(ListTagsForResourceCommand).resolves({ tags: [] });
    const result = await run('schedule', path, '--at', '2026-12-01T02:00:00Z', '--state-machine', STATE_MACHINE);
    expect(result.code).toBe(1);
    expect(result.stderr).toContain(`State machine ${STATE_MACHINE} has no tag ${stateMachineTags.schedulerRole}: it was not deployed by pgferry's construct`);
    expect(scheduler.calls()).toHaveLength(0);
  });

  it('refuses local secrets as start does', async () => {
    const path = scratch.writeJson('schedule-local.json', { ...awsSpec, target: { secret: 'file:/etc/target.json' } });
    const result = await run('schedule', path, '--at', '2026-12-01T02:00:00Z', '--state-machine', STATE_MACHINE);
    expect(result.code).toBe(2);
    expect(result.stderr).toContain('- target.secret: on AWS this must be a Secrets Manager ARN');
    expect(scheduler.calls()).toHaveLength(0);
  });
});

describe('pgferry status EXECUTION_ARN', () => {
  it("prints the execution's state and the migration status the Operator function reads", async () => {
    givenExecution('RUNNING');
    sfn.on(GetExecutionHistoryCommand).resolves({
      events: [
        { id: 90, timestamp: NOW, type: 'TaskScheduled' },
        { id: 89, timestamp: NOW, type: 'TaskStateEntered', stateEnteredEventDetails: { name: 'ReplicationStatus' } },
      ],
    });
    lambda.on(InvokeCommand).resolves({ StatusCode: 200, Payload: lambdaPayload({ action: 'status', status: replicatingAsSent }) });

    const result = await run('status', EXECUTION);

    expect(result).toMatchObject({ code: 0, stderr: '' });
    expect(sfn.commandCalls(GetExecutionHistoryCommand)[0]!.args[0].input).toMatchObject({ executionArn: EXECUTION, reverseOrder: true });
    const invoke = lambda.commandCalls(InvokeCommand)[0]!.args[0].input;
    expect(invoke.FunctionName).toBe(OPERATOR);
    expect(JSON.parse(String(invoke.Payload))).toEqual({ action: 'status', spec: awsSpec });
    expect(result.stdout).toContain('Execution orders-move-20261120T093015Z: RUNNING (in ReplicationStatus)\n  started 2026-11-20T09:30:16Z\n');
    expect(result.stdout).toContain(formatStatus(replicatingAsSent));
    expect(result.stdout).toContain('Migration orders-move: replicate');
    expect(result.stdout).toContain('CDC: lag 0.4 s');
  });

  it('still shows the execution when the Operator function fails, saying why the progress is missing', async () => {
    givenExecution('RUNNING');
    sfn.on(GetExecutionHistoryCommand).resolves({ events: [{ id: 7, timestamp: NOW, type: 'TaskStateEntered', stateEnteredEventDetails: { name: 'FullLoad' } }] });
    lambda.on(InvokeCommand).resolves({
      StatusCode: 200,
      FunctionError: 'Unhandled',
      Payload: lambdaPayload({ errorType: 'pgferry.SecretInvalid', errorMessage: `Secret ${TARGET_SECRET}: field "host" is missing` }),
    });

    const result = await run('status', EXECUTION);

    expect(result.code).toBe(0);
    expect(result.stdout).toContain('Execution orders-move-20261120T093015Z: RUNNING (in FullLoad)');
    expect(result.stdout).toContain(`Progress unavailable: the Operator function failed (pgferry.SecretInvalid): Secret ${TARGET_SECRET}: field "host" is missing`);
  });

  it('names the Map state around a state of its iterations (FullLoad › CopyWorker), reading back only as far as needed', async () => {
    givenExecution('RUNNING');
    sfn
      .on(GetExecutionHistoryCommand)
      .resolvesOnce({
        events: [
          { id: 31, previousEventId: 30, timestamp: NOW, type: 'TaskSubmitted' },
          { id: 30, previousEventId: 29, timestamp: NOW, type: 'TaskStateEntered', stateEnteredEventDetails: { name: 'CopyWorker' } },
          { id: 29, previousEventId: 27, timestamp: NOW, type: 'MapIterationStarted' },
          { id: 28, previousEventId: 27, timestamp: NOW, type: 'TaskStateEntered', stateEnteredEventDetails: { name: 'CopyWorker' } },
        ],
        nextToken: 'page-2',
      })
      .resolvesOnce({
        events: [
          { id: 27, previousEventId: 26, timestamp: NOW, type: 'MapIterationStarted' },
          { id: 26, previousEventId: 25, timestamp: NOW, type: 'MapStateEntered', stateEnteredEventDetails: { name: 'FullLoad' } },
        ],
        nextToken: 'page-3',
      });
    lambda.on(InvokeCommand).resolves({ StatusCode: 200, Payload: lambdaPayload({ action: 'status', status: replicatingAsSent }) });
    const result = await run('status', EXECUTION);
    expect(result.stdout).toContain('RUNNING (in FullLoad › CopyWorker)');
    expect(sfn.commandCalls(GetExecutionHistoryCommand)).toHaveLength(2);

    sfn.reset();
    givenExecution('RUNNING');
    sfn.on(GetExecutionHistoryCommand).resolves({
      events: [{ id: 89, previousEventId: 88, timestamp: NOW, type: 'TaskStateEntered', stateEnteredEventDetails: { name: 'ReplicationStatus' } },
        { id: 88, previousEventId: 87, timestamp: NOW, type: 'WaitStateExited', stateExitedEventDetails: { name: 'CatchUp' } }],
      nextToken: 'more',
    });
    expect((await run('status', EXECUTION)).stdout).toContain('RUNNING (in ReplicationStatus)');
    expect(sfn.commandCalls(GetExecutionHistoryCommand)).toHaveLength(1);
  });

  it('says so when the Operator function cannot be invoked', async () => {
    givenExecution('RUNNING');
    sfn.on(GetExecutionHistoryCommand).resolves({ events: [] });
    lambda.on(InvokeCommand).rejects(awsError('AccessDeniedException'));
    const result = await run('status', EXECUTION);
    expect(result.code).toBe(0);
    expect(result.stdout).toContain('Progress unavailable: Could not ask the Operator function for the status: access denied.');
    expect(result.stdout).toContain(`allow lambda:InvokeFunction on ${OPERATOR}`);
  });

  it("exits 1 for a failed execution, with the error and cause it ended with, paging back through the history", async () => {
    givenExecution('FAILED', { stopDate: new Date('2026-11-20T09:41:00Z') });
    sfn
      .on(GetExecutionHistoryCommand)
      .resolvesOnce({
        events: [
          {
            id: 40,
            timestamp: NOW,
            type: 'ExecutionFailed',
            executionFailedEventDetails: { error: 'pgferry.PrecheckFailed', cause: 'Precheck failed:\nwal_level is replica, must be logical' },
          },
        ],
        nextToken: 'page-2',
      })
      .resolvesOnce({ events: [{ id: 39, timestamp: NOW, type: 'FailStateEntered', stateEnteredEventDetails: { name: 'MigrationFailed' } }] });
    lambda.on(InvokeCommand).resolves({ Payload: lambdaPayload({ action: 'status', status: { name: 'orders-move', phase: 'failed', error: 'wal_level', tables: [] } }) });

    const result = await run('status', EXECUTION);

    expect(result.code).toBe(1);
    expect(sfn.commandCalls(GetExecutionHistoryCommand)[1]!.args[0].input.nextToken).toBe('page-2');
    expect(result.stdout).toContain('Execution orders-move-20261120T093015Z: FAILED (last state MigrationFailed)');
    expect(result.stdout).toContain('started 2026-11-20T09:30:16Z, stopped 2026-11-20T09:41:00Z');
    expect(result.stdout).toContain('  error: pgferry.PrecheckFailed\n  cause: Precheck failed:\n         wal_level is replica, must be logical\n');
    expect(result.stdout).toContain('Migration orders-move: failed');
  });

  it('exits 1 for an unknown execution and 2 for something that is no execution ARN', async () => {
    sfn.on(DescribeExecutionCommand).rejects(awsError('ExecutionDoesNotExist', 'Execution Does Not Exist'));
    const missing = await run('status', EXECUTION);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toContain(`execution ${EXECUTION} does not exist`);

    const wrong = await run('status', STATE_MACHINE);
    expect(wrong.code).toBe(2);
    expect(wrong.stderr).toContain(`EXECUTION_ARN: "${STATE_MACHINE}" is not a Step Functions execution ARN`);
  });
});

describe('pgferry cutover EXECUTION_ARN', () => {
  it('asks the Operator function to request the cutover and prints its answer', async () => {
    givenExecution('RUNNING');
    const message = 'Cutover requested for orders-move: it starts once lag is under 5 s, drains the remaining changes, then sets sequences and compares.';
    lambda.on(InvokeCommand).resolves({ Payload: lambdaPayload({ action: 'cutover', result: { requested: true, message } }) });

    const result = await run('cutover', EXECUTION);

    expect(result).toMatchObject({ code: 0, stderr: '' });
    expect(JSON.parse(String(lambda.commandCalls(InvokeCommand)[0]!.args[0].input.Payload))).toEqual({ action: 'cutover', spec: awsSpec });
    expect(result.stdout).toContain(message);
  });

  it('exits 1 with the reason when the migration is not replicating', async () => {
    givenExecution('RUNNING');
    const reason = 'Migration orders-move is not replicating changes (phase: load): there is nothing to cut over.';
    lambda.on(InvokeCommand).resolves({ Payload: lambdaPayload({ action: 'cutover', result: { requested: false, reason } }) });
    expect(await run('cutover', EXECUTION)).toMatchObject({ code: 1, stderr: `${reason}\n` });
  });

  it('refuses an execution that is not running, without asking the Operator function', async () => {
    givenExecution('SUCCEEDED');
    const result = await run('cutover', EXECUTION);
    expect(result.code).toBe(1);
    expect(result.stderr).toContain('Execution orders-move-20261120T093015Z is SUCCEEDED, not RUNNING: there is nothing to cut over.');
    expect(lambda.calls()).toHaveLength(0);
  });
});

describe('pgferry stop EXECUTION_ARN', () => {
  it('stops a running execution and says what the cleanup rule does', async () => {
    givenExecution('RUNNING');
    sfn.on(StopExecutionCommand).resolves({ stopDate: new Date('2026-11-20T09:31:00Z') });

    const result = await run('stop', EXECUTION);

    expect(result).toMatchObject({ code: 0, stderr: '' });
    expect(sfn.commandCalls(StopExecutionCommand)[0]!.args[0].input).toEqual({
      executionArn: EXECUTION,
      error: 'pgferry.Stopped',
      cause: 'Stopped with pgferry stop',
    });
    expect(result.stdout).toContain('Stopped execution orders-move-20261120T093015Z at 2026-11-20T09:31:00Z.');
    expect(result.stdout).toContain('pauses its run: it keeps the replication slot and publication, and lifts a cutover fence');
    expect(result.stdout).toContain(`pgferry resume ${EXECUTION}, or abandon it with pgferry stop ${EXECUTION} --drop`);
  });

  it("asks the Operator function to clean up the run an ended execution left registered, and says what it did", async () => {
    // The cleanup rule failed (say, the source was unreachable then): the run still refuses later ones.
    givenExecution('ABORTED', { stopDate: new Date('2026-11-20T09:31:00Z') });
    lambda.on(InvokeCommand).resolves({
      Payload: lambdaPayload({ action: 'cleanup', result: { cleaned: true, unfenced: true, slotDropped: true, publicationDropped: true } }),
    });

    const result = await run('stop', EXECUTION);

    expect(result).toMatchObject({ code: 0, stderr: '' });
    expect(sfn.commandCalls(StopExecutionCommand)).toHaveLength(0);
    const invoke = lambda.commandCalls(InvokeCommand)[0]!.args[0].input;
    expect(invoke.FunctionName).toBe(OPERATOR);
    expect(JSON.parse(String(invoke.Payload))).toEqual({ action: 'cleanup', spec: awsSpec, execution: EXECUTION, abandon: false });
    expect(result.stdout).toBe(
      'Execution orders-move-20261120T093015Z had already ended (ABORTED). Migration orders-move is marked failed; ' +
        'dropped the replication slot, dropped the publication, lifted the write fence on the source. It can run again.\n',
    );
  });

  it('says so when the run was already cleaned up (a full migration has no slot)', async () => {
    givenExecution('FAILED');
    lambda.on(InvokeCommand).resolves({ Payload: lambdaPayload({ action: 'cleanup', result: { cleaned: true, unfenced: false } }) });
    const result = await run('stop', EXECUTION);
    expect(result).toMatchObject({ code: 0, stderr: '' });
    expect(result.stdout).toContain('Migration orders-move is marked failed. It can run again.');
  });

  it('refuses an execution that succeeded, without asking the Operator function (it finished its run)', async () => {
    givenExecution('SUCCEEDED');
    const result = await run('stop', EXECUTION);
    expect(result.code).toBe(1);
    expect(result.stderr).toBe('Execution orders-move-20261120T093015Z is SUCCEEDED, not RUNNING: there is nothing to stop.\n');
    expect(sfn.commandCalls(StopExecutionCommand)).toHaveLength(0);
    expect(lambda.calls()).toHaveLength(0);
  });

  it("exits 1 with the Operator's reason when the run is another execution's, or there is none", async () => {
    givenExecution('FAILED');
    const reason = `migration orders-move on the target belongs to ${EXECUTION}-2, not to ${EXECUTION}`;
    lambda.on(InvokeCommand).resolves({ Payload: lambdaPayload({ action: 'cleanup', result: { cleaned: false, reason } }) });
    const result = await run('stop', EXECUTION);
    expect(result).toMatchObject({ code: 1, stdout: '' });
    expect(result.stderr).toBe(`Execution orders-move-20261120T093015Z is FAILED, not RUNNING: there is nothing to stop.\nNothing cleaned up: ${reason}\n`);
    expect(sfn.commandCalls(StopExecutionCommand)).toHaveLength(0);
  });

  it('says what it did and what failed when the cleanup did not finish', async () => {
    givenExecution('TIMED_OUT');
    lambda.on(InvokeCommand).resolves({
      Payload: lambdaPayload({ action: 'cleanup', result: { cleaned: false, unfenced: false, slotDropped: true, reason: 'source: Cannot drop publication' } }),
    });
    const result = await run('stop', EXECUTION);
    expect(result.code).toBe(1);
    expect(result.stderr).toContain('Cleaned up its run in part (dropped the replication slot): source: Cannot drop publication\n');
  });

  it('exits 1 when the Operator function fails or the input is not available', async () => {
    givenExecution('ABORTED');
    lambda.on(InvokeCommand).resolves({
      FunctionError: 'Unhandled',
      Payload: lambdaPayload({ errorType: 'pgferry.ConnectionFailed', errorMessage: 'Cannot connect to the target (db:5432/orders as migrator): timeout' }),
    });
    const failed = await run('stop', EXECUTION);
    expect(failed.code).toBe(1);
    expect(failed.stderr).toContain('the Operator function failed (pgferry.ConnectionFailed): Cannot connect to the target');

    sfn.reset();
    lambda.reset();
    givenExecution('ABORTED', { input: undefined });
    const noInput = await run('stop', EXECUTION);
    expect(noInput.code).toBe(1);
    expect(noInput.stderr).toContain('Execution orders-move-20261120T093015Z is ABORTED; cannot clean up its migration: the execution input (the spec) is not available to these credentials.');
    expect(lambda.calls()).toHaveLength(0);
  });

  it('takes anything but an ARN for a local spec file (pgferry stop SPEC), and calls no AWS API for it', async () => {
    const result = await run('stop', 'no-such-spec.json');
    expect(result.code).toBe(2);
    expect(result.stderr).toContain('Cannot read the spec file no-such-spec.json: no such file.');
    expect(sfn.calls()).toHaveLength(0);
  });
});

/**
 * The CLI's side of a deployment on AWS: starts, schedules, describes, cuts over and stops
 * executions of the pgferry state machine, and asks the Operator function (lambdas/operate.ts)
 * for a run's progress, its cutover, and the cleanup of a run an ended execution left behind.
 * Every client is built for the region of the ARN it acts on, so the person needs credentials
 * but no AWS_REGION. Functions return plain data; the CLI words and exits.
 */
import { InvokeCommand, LambdaClient } from '@aws-sdk/client-lambda';
import { CreateScheduleCommand, SchedulerClient } from '@aws-sdk/client-scheduler';
import {
  DescribeExecutionCommand,
  GetExecutionHistoryCommand,
  ListTagsForResourceCommand,
  SFNClient,
  StartExecutionCommand,
  StopExecutionCommand,
  type DescribeExecutionOutput,
  type HistoryEvent,
} from '@aws-sdk/client-sfn';
import { isRfc3339Timestamp, type MigrationSpec, type SpecProblem } from '../../engine/spec/index.js';
import type { CutoverRequest, MigrationStatus } from '../../engine/status.js';
import type { CleanupResult } from '../../engine/steps/cleanup.js';
import { stateMachineTags, stopFailure, type OperatorRequest, type OperatorResponse } from './deployment.js';

/** Something the person typed is wrong (an ARN, a time): the CLI treats it as a usage error. */
export class InvalidArgumentError extends Error {
  override name = 'InvalidArgumentError';
}

/** An AWS call failed; the message says what to check, `awsError` is the SDK's error name. */
export class AwsCallError extends Error {
  override name = 'AwsCallError';
  constructor(
    message: string,
    readonly awsError: string,
  ) {
    super(message);
  }
}

// ---------------------------------------------------------------------------------------------
// ARNs

const PARTITION = 'aws[-a-z]*';
const REGION = '[a-z]{2}(?:-[a-z]+)+-\\d+';
/** Step Functions names exclude whitespace, ":" and "/" among others. */
const SFN_NAME = '[^\\s:/]{1,80}';
const STATE_MACHINE_ARN = new RegExp(`^arn:${PARTITION}:states:(${REGION}):(\\d{12}):stateMachine:(${SFN_NAME})(?::${SFN_NAME})?$`);
const EXECUTION_ARN = new RegExp(`^arn:${PARTITION}:states:(${REGION}):(\\d{12}):execution:(${SFN_NAME}):(${SFN_NAME})$`);
const ANY_ARN_REGION = new RegExp(`^arn:${PARTITION}:[a-z0-9-]+:(${REGION}):`);

export interface ParsedArn {
  arn: string;
  region: string;
  account: string;
  /** The state machine's name; for an execution, the execution's name. */
  name: string;
}

export function parseStateMachineArn(value: string, argument = '--state-machine'): ParsedArn {
  const match = STATE_MACHINE_ARN.exec(value);
  if (!match) {
    throw new InvalidArgumentError(
      `${argument}: ${JSON.stringify(value)} is not a Step Functions state machine ARN (arn:aws:states:REGION:ACCOUNT:stateMachine:NAME); ` +
        'the pgferry stack prints it as its StateMachineArn output.',
    );
  }
  return { arn: value, region: match[1]!, account: match[2]!, name: match[3]! };
}

export function parseExecutionArn(value: string, argument = 'EXECUTION_ARN'): ParsedArn {
  const match = EXECUTION_ARN.exec(value);
  if (!match) {
    throw new InvalidArgumentError(
      `${argument}: ${JSON.stringify(value)} is not a Step Functions execution ARN (arn:aws:states:REGION:ACCOUNT:execution:STATE_MACHINE:NAME); ` +
        '"pgferry start" prints it.',
    );
  }
  return { arn: value, region: match[1]!, account: match[2]!, name: match[4]! };
}

/** A versioned or aliased state machine ARN carries its deployment's tags on the unqualified one. */
function unqualifiedStateMachineArn(arn: string): string {
  return arn.split(':').slice(0, 7).join(':');
}

// ---------------------------------------------------------------------------------------------
// Spec and names

const LOCAL_SECRET_PREFIXES = ['file:', 'env:'] as const;

/** Secret references that only resolve on the person's machine: on AWS the tasks could not read them. */
export function localOnlySecretProblems(input: unknown): SpecProblem[] {
  return (['source', 'target'] as const).flatMap((side) => {
    const endpoint = (input as Record<string, unknown> | null)?.[side];
    const secret = typeof endpoint === 'object' && endpoint !== null ? (endpoint as Record<string, unknown>).secret : undefined;
    const prefix = LOCAL_SECRET_PREFIXES.find((p) => typeof secret === 'string' && secret.startsWith(p));
    if (!prefix) return [];
    return [
      {
        path: `${side}.secret`,
        message: `on AWS this must be a Secrets Manager ARN (arn:aws:secretsmanager:…); "${prefix}…" only works with "pgferry run"`,
      },
    ];
  });
}

/** 2026-12-01T02:00:00.000Z → 2026-12-01T02:00:00Z: a time as messages show it, to the second. */
export function isoSeconds(date: Date): string {
  return date.toISOString().replace(/\.\d+Z$/, 'Z');
}

/** 2026-12-01T02:00:00.000Z → 20261201T020000Z */
function compactUtcTimestamp(date: Date): string {
  return isoSeconds(date).replace(/[-:]/g, '');
}

const EXECUTION_NAME_MAX = 80;
const SCHEDULE_NAME_MAX = 64;

/** Spec names are [A-Za-z][A-Za-z0-9_-]{3,49}: valid in both kinds of names, only too long for schedules. */
function timestampedName(specName: string, date: Date, max: number): string {
  const suffix = `-${compactUtcTimestamp(date)}`;
  return `${specName.slice(0, max - suffix.length)}${suffix}`;
}

const executionName = (specName: string, now: Date) => timestampedName(specName, now, EXECUTION_NAME_MAX);
const scheduleName = (specName: string, at: Date) => timestampedName(specName, at, SCHEDULE_NAME_MAX);

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

// ---------------------------------------------------------------------------------------------
// Calls and their errors

interface Call {
  /** What was being done, as in "Could not <action>". */
  action: string;
  /** The IAM action the person's role needs. */
  permission: string;
  resource: ParsedArn | { arn: string; region?: string; account?: string };
  notFound?: string;
  conflict?: string;
}

const CREDENTIALS_REJECTED = new Set([
  'UnrecognizedClientException',
  'InvalidClientTokenId',
  'InvalidSignatureException',
  'ExpiredToken',
  'ExpiredTokenException',
  'SignatureDoesNotMatch',
]);
const ACCESS_DENIED = new Set(['AccessDeniedException', 'AccessDenied', 'AuthorizationError']);
const NOT_FOUND = new Set(['StateMachineDoesNotExist', 'ExecutionDoesNotExist', 'ResourceNotFoundException', 'ResourceNotFound']);
const CONFLICT = new Set(['ExecutionAlreadyExists', 'ConflictException']);

function explainAwsError(error: unknown, call: Call): string {
  const name = (error as { name?: string } | null)?.name ?? 'Error';
  const message = (error as { message?: string } | null)?.message ?? String(error);
  const where = [call.resource.account && `account ${call.resource.account}`, call.resource.region && `region ${call.resource.region}`]
    .filter(Boolean)
    .join(', ');
  if (name === 'CredentialsProviderError' || /could not load credentials/i.test(message)) {
    return `Could not ${call.action}: no AWS credentials found. Set AWS_PROFILE (after "aws sso login" if it uses SSO) or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY.`;
  }
  if (CREDENTIALS_REJECTED.has(name)) {
    return `Could not ${call.action}: AWS rejected the credentials (${name}). They may have expired: refresh them (e.g. "aws sso login") and try again.`;
  }
  if (ACCESS_DENIED.has(name)) {
    return (
      `Could not ${call.action}: access denied. Check that your credentials are for ${where || 'the right account'} ` +
      `and that they allow ${call.permission} on ${call.resource.arn}. (${message})`
    );
  }
  if (NOT_FOUND.has(name)) return `Could not ${call.action}: ${call.notFound ?? `${call.resource.arn} does not exist`} (${where}).`;
  if (CONFLICT.has(name) && call.conflict) return `Could not ${call.action}: ${call.conflict}`;
  return `Could not ${call.action} (${name}): ${message}`;
}

async function send<T>(call: Call, request: () => Promise<T>): Promise<T> {
  try {
    return await request();
  } catch (error) {
    throw new AwsCallError(explainAwsError(error, call), (error as { name?: string } | null)?.name ?? 'Error');
  }
}

const sfnClients = new Map<string, SFNClient>();

/** One client per region, for every call and history page of a command. */
function sfnClient(region: string): SFNClient {
  let client = sfnClients.get(region);
  if (!client) sfnClients.set(region, (client = new SFNClient({ region })));
  return client;
}

// ---------------------------------------------------------------------------------------------
// Start and schedule

export interface StartedMigration {
  executionArn: string;
  executionName: string;
  startDate: Date;
}

/** `input` is the spec as the person wrote it: ValidateSpec fills the defaults, the cleanup rule reads this. */
export async function startMigration(options: { stateMachineArn: string; spec: MigrationSpec; input: unknown; now?: Date }): Promise<StartedMigration> {
  const stateMachine = parseStateMachineArn(options.stateMachineArn);
  const now = options.now ?? new Date();
  const name = executionName(options.spec.name, now);
  const response = await send(
    {
      action: `start an execution of ${stateMachine.name}`,
      permission: 'states:StartExecution',
      resource: stateMachine,
      notFound: `state machine ${stateMachine.arn} does not exist; check the ARN (the stack's StateMachineArn output) and that the stack is deployed`,
      conflict: `an execution named ${name} already exists; wait a second and start again`,
    },
    () => sfnClient(stateMachine.region).send(new StartExecutionCommand({ stateMachineArn: stateMachine.arn, name, input: JSON.stringify(options.input) })),
  );
  return { executionArn: response.executionArn!, executionName: name, startDate: response.startDate ?? now };
}

async function readTags(stateMachine: ParsedArn): Promise<Map<string, string>> {
  const arn = unqualifiedStateMachineArn(stateMachine.arn);
  const response = await send(
    {
      action: `read the tags of state machine ${stateMachine.name}`,
      permission: 'states:ListTagsForResource',
      resource: stateMachine,
      notFound: `state machine ${arn} does not exist; check the ARN and that the stack is deployed`,
    },
    () => sfnClient(stateMachine.region).send(new ListTagsForResourceCommand({ resourceArn: arn })),
  );
  return new Map((response.tags ?? []).flatMap((tag) => (tag.key && tag.value ? [[tag.key, tag.value] as const] : [])));
}

/** Thrown when a state machine lacks the tags pgferry's construct puts on it (platform/aws/deployment.ts). */
export class NotPgferryDeploymentError extends AwsCallError {
  override name = 'NotPgferryDeploymentError';
}

function requireTag(tags: Map<string, string>, tag: keyof typeof stateMachineTags, stateMachine: ParsedArn): string {
  const value = tags.get(stateMachineTags[tag]);
  if (!value) {
    throw new NotPgferryDeploymentError(
      `State machine ${stateMachine.arn} has no tag ${stateMachineTags[tag]}: it was not deployed by pgferry's construct ` +
        '(or by an older version of it). Pass the StateMachineArn output of a pgferry stack.',
      'MissingTag',
    );
  }
  return value;
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

// ---------------------------------------------------------------------------------------------
// A run: describe, cut over, stop

async function describeExecution(execution: ParsedArn): Promise<DescribeExecutionOutput> {
  return send(
    {
      action: `describe execution ${execution.name}`,
      permission: 'states:DescribeExecution',
      resource: execution,
      notFound: `execution ${execution.arn} does not exist; check the ARN (Step Functions keeps executions 90 days after they end)`,
    },
    () => sfnClient(execution.region).send(new DescribeExecutionCommand({ executionArn: execution.arn })),
  );
}

const HISTORY_PAGES = 5;

/**
 * The last state entered — for a state inside a Map iteration, as "Map › inner" — and, for an
 * execution that ended badly, its error and cause, newest events first.
 */
async function readHistory(execution: ParsedArn): Promise<{ lastState?: string; error?: string; cause?: string }> {
  const found: { lastState?: string; error?: string; cause?: string } = {};
  // After the last state entered: reading on to the Map state that holds it, if any.
  let inner: string | undefined;
  let enteredAfter: number | undefined;
  let done = false;
  let nextToken: string | undefined;
  for (let page = 0; page < HISTORY_PAGES && !done; page++) {
    const response = await send(
      { action: `read the history of execution ${execution.name}`, permission: 'states:GetExecutionHistory', resource: execution },
      () =>
        sfnClient(execution.region).send(
          new GetExecutionHistoryCommand({ executionArn: execution.arn, reverseOrder: true, maxResults: 100, nextToken }),
        ),
    );
    for (const event of response.events ?? []) {
      const ended = endDetails(event);
      if (ended && found.error === undefined) Object.assign(found, ended);
      if (inner === undefined) {
        if (!event.stateEnteredEventDetails?.name) continue;
        found.lastState = inner = event.stateEnteredEventDetails.name;
        // A state of a Map iteration follows its MapIterationStarted; any other, the state before it.
        enteredAfter = event.previousEventId;
        done = enteredAfter === undefined;
      } else if (event.id === enteredAfter && !event.type?.startsWith('MapIteration')) {
        done = true;
      } else if (event.type === 'MapStateEntered' && event.stateEnteredEventDetails?.name) {
        found.lastState = `${event.stateEnteredEventDetails.name} › ${inner}`;
        done = true;
      }
      if (done) break;
    }
    nextToken = response.nextToken;
    if (!nextToken) break;
  }
  return found;
}

function endDetails(event: HistoryEvent): { error?: string; cause?: string } | undefined {
  return event.executionFailedEventDetails ?? event.executionAbortedEventDetails ?? event.executionTimedOutEventDetails;
}

export type Progress = { available: true; status: MigrationStatus | null } | { available: false; reason: string };

export interface RunDescription {
  executionArn: string;
  executionName: string;
  stateMachineArn: string;
  status: string;
  startDate?: Date;
  stopDate?: Date;
  /** The state the execution is in, or the last one it entered. */
  lastState?: string;
  error?: string;
  cause?: string;
  /** The spec's name, from the execution's input. */
  migrationName?: string;
  progress: Progress;
}

export async function describeRun(executionArn: string): Promise<RunDescription> {
  const execution = parseExecutionArn(executionArn);
  const described = await describeExecution(execution);
  const spec = parseInput(described);
  const stateMachineArn = described.stateMachineArn!;
  const [history, progress] = await Promise.all([
    readHistory(execution),
    'reason' in spec
      ? ({ available: false, reason: spec.reason } satisfies Progress)
      : invokeOperator(stateMachineArn, { action: 'status', spec: spec.value }).then(
          (response): Progress => ({ available: true, status: response.status }),
          (error: unknown): Progress => ({ available: false, reason: (error as Error).message }),
        ),
  ]);
  return {
    executionArn: execution.arn,
    executionName: described.name ?? execution.name,
    stateMachineArn,
    status: described.status ?? 'UNKNOWN',
    startDate: described.startDate,
    stopDate: described.stopDate,
    lastState: history.lastState,
    error: described.error ?? history.error,
    cause: described.cause ?? history.cause,
    migrationName: 'value' in spec ? specName(spec.value) : undefined,
    progress,
  };
}

function specName(spec: unknown): string | undefined {
  const name = (spec as { name?: unknown } | null)?.name;
  return typeof name === 'string' ? name : undefined;
}

function parseInput(described: DescribeExecutionOutput): { value: unknown } | { reason: string } {
  if (described.input === undefined) return { reason: 'the execution input (the spec) is not available to these credentials' };
  try {
    return { value: JSON.parse(described.input) };
  } catch {
    return { reason: 'the execution input is not JSON, so it names no migration' };
  }
}

function unexpectedResponse(response: unknown): never {
  throw new Error(`the Operator function answered ${JSON.stringify(response).slice(0, 200)}`);
}

/** The Operator's answer to `request`: one for another action is refused here. */
async function invokeOperator<A extends OperatorRequest['action']>(
  stateMachineArn: string,
  request: OperatorRequest & { action: A },
): Promise<Extract<OperatorResponse, { action: A }>> {
  const stateMachine = parseStateMachineArn(stateMachineArn, "the execution's state machine");
  const functionArn = requireTag(await readTags(stateMachine), 'operatorFunction', stateMachine);
  const region = ANY_ARN_REGION.exec(functionArn)?.[1] ?? stateMachine.region;
  const response = await send(
    {
      action: `ask the Operator function for the ${request.action}`,
      permission: 'lambda:InvokeFunction',
      resource: { arn: functionArn, region, account: stateMachine.account },
      notFound: `the Operator function ${functionArn} does not exist; redeploy the pgferry stack`,
    },
    () => new LambdaClient({ region }).send(new InvokeCommand({ FunctionName: functionArn, Payload: JSON.stringify(request) })),
  );
  const text = response.Payload ? new TextDecoder().decode(response.Payload) : '';
  let payload: unknown;
  try {
    payload = JSON.parse(text);
  } catch {
    payload = undefined;
  }
  if (response.FunctionError) {
    const { errorType, errorMessage } = (payload ?? {}) as { errorType?: string; errorMessage?: string };
    throw new AwsCallError(`the Operator function failed (${errorType ?? response.FunctionError}): ${errorMessage ?? (text || 'no message')}`, errorType ?? 'FunctionError');
  }
  if (typeof payload !== 'object' || payload === null || (payload as { action?: unknown }).action !== request.action) unexpectedResponse(payload ?? text);
  return payload as Extract<OperatorResponse, { action: A }>;
}

export type RunCutover = { running: false; status: string } | { running: true; result: CutoverRequest };

/**
 * The request goes through the control schema, on AWS as locally: the workflow's status loop
 * (which also restarts a silent streamer) sees it at its next poll. A task token would have the
 * workflow wait on the token and stop that loop.
 */
export async function requestRunCutover(executionArn: string): Promise<RunCutover> {
  const execution = parseExecutionArn(executionArn);
  const described = await describeExecution(execution);
  if (described.status !== 'RUNNING') return { running: false, status: described.status ?? 'UNKNOWN' };
  const spec = parseInput(described);
  if ('reason' in spec) throw new AwsCallError(`Cannot cut over execution ${execution.name}: ${spec.reason}.`, 'NoInput');
  const response = await invokeOperator(described.stateMachineArn!, { action: 'cutover', spec: spec.value });
  return { running: true, result: response.result };
}

export type RunStop =
  | { stopped: true; stopDate: Date }
  /** The execution had ended: `cleanup` is what the Operator did to the run it left registered (none after SUCCEEDED). */
  | { stopped: false; status: string; migrationName?: string; cleanup?: CleanupResult };

/**
 * Stops a running execution (the stack's cleanup rule then cleans up its run). For one that has
 * ended, asks the Operator function to clean up the run it registered, if it is still registered:
 * the rule may have failed (a database unreachable then), and the run would refuse every later
 * run of the migration (pgferry.MigrationRunning). Only that execution's run is touched. An
 * execution that succeeded finished its run itself: there is nothing to clean up.
 */
export async function stopRun(executionArn: string): Promise<RunStop> {
  const execution = parseExecutionArn(executionArn);
  const described = await describeExecution(execution);
  if (described.status !== 'RUNNING') {
    const status = described.status ?? 'UNKNOWN';
    if (status === 'SUCCEEDED') return { stopped: false, status };
    const spec = parseInput(described);
    if ('reason' in spec) throw new AwsCallError(`Execution ${execution.name} is ${status}; cannot clean up its migration: ${spec.reason}.`, 'NoInput');
    const response = await invokeOperator(described.stateMachineArn!, { action: 'cleanup', spec: spec.value, execution: execution.arn });
    return { stopped: false, status, migrationName: specName(spec.value), cleanup: response.result };
  }
  const response = await send(
    {
      action: `stop execution ${execution.name}`,
      permission: 'states:StopExecution',
      resource: execution,
      notFound: `execution ${execution.arn} does not exist`,
    },
    () => sfnClient(execution.region).send(new StopExecutionCommand({ executionArn: execution.arn, error: stopFailure.Error, cause: stopFailure.Cause })),
  );
  return { stopped: true, stopDate: response.stopDate ?? new Date() };
}

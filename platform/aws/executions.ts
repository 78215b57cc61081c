/**
 * The CLI's client of the executions of a deployed pgferry state machine: starts one, and
 * describes, cuts over and stops one (through the Operator function where the databases must
 * be reached). Every client is built for the region of the ARN it acts on, so the person needs
 * credentials but no AWS_REGION. Functions return plain data; the CLI words and exits.
 */
import {
  DescribeExecutionCommand,
  GetExecutionHistoryCommand,
  StartExecutionCommand,
  StopExecutionCommand,
  type DescribeExecutionOutput,
  type HistoryEvent,
} from '@aws-sdk/client-sfn';
import type { MigrationSpec } from '../../engine/spec/index.js';
import type { AfterCutoverRequest, CutoverRequest } from '../../engine/cutover/request.js';
import type { MigrationStatus } from '../../engine/status.js';
import type { CleanupResult } from '../../engine/steps/cleanup.js';
import type { ThrottleChange, ThrottleResult } from '../../engine/flow/throttle.js';
import { parseExecutionArn, parseStateMachineArn, type ParsedArn } from './arns.js';
import { AwsCallError, send, sfnClient } from './calls.js';
import { stopFailure, type OperatorFinish } from './deployment.js';
import { executionName } from './names.js';
import { invokeOperator } from './operator.js';
import { runInputOf } from '../../engine/steps/validate-spec.js';

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

/** The spec the execution was started with (from a resume's input too). */
function parseInput(described: DescribeExecutionOutput): { value: unknown } | { reason: string } {
  if (described.input === undefined) return { reason: 'the execution input (the spec) is not available to these credentials' };
  try {
    return { value: runInputOf(JSON.parse(described.input)).spec };
  } catch {
    return { reason: 'the execution input is neither a spec nor a resume of one, so it names no migration' };
  }
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

export type RunThrottle = { running: false; status: string } | { running: true; result: ThrottleResult };

/** `pgferry throttle EXECUTION_ARN`: the Operator writes the new limits to the control schema, where the run's workers read them. */
export async function requestRunThrottle(executionArn: string, change: ThrottleChange): Promise<RunThrottle> {
  const execution = parseExecutionArn(executionArn);
  const described = await describeExecution(execution);
  if (described.status !== 'RUNNING') return { running: false, status: described.status ?? 'UNKNOWN' };
  const spec = parseInput(described);
  if ('reason' in spec) throw new AwsCallError(`Cannot throttle execution ${execution.name}: ${spec.reason}.`, 'NoInput');
  const response = await invokeOperator(described.stateMachineArn!, { action: 'throttle', spec: spec.value, throttle: change });
  return { running: true, result: response.result };
}

/**
 * `pgferry fallback|finish EXECUTION_ARN`: the Operator puts the request in the control schema,
 * where the workflow's Reverse loop sees it (or, for finish of a run with no workflow left,
 * finishes it itself). A finished execution's run may still be finished.
 */
export async function requestRunAfterCutover(
  executionArn: string,
  action: 'fallback' | 'finish',
  { dropControl = false }: { dropControl?: boolean } = {},
): Promise<AfterCutoverRequest | OperatorFinish> {
  const execution = parseExecutionArn(executionArn);
  const described = await describeExecution(execution);
  const spec = parseInput(described);
  if ('reason' in spec) throw new AwsCallError(`Cannot ${action} execution ${execution.name}: ${spec.reason}.`, 'NoInput');
  if (action === 'fallback') return (await invokeOperator(described.stateMachineArn!, { action, spec: spec.value })).result;
  return (await invokeOperator(described.stateMachineArn!, { action, spec: spec.value, dropControl })).result;
}

export type RunStop =
  | { stopped: true; stopDate: Date; migrationName?: string; cleanup?: CleanupResult }
  /** The execution had ended: `cleanup` is what the Operator did to the run it left registered (none after SUCCEEDED). */
  | { stopped: false; status: string; migrationName?: string; cleanup?: CleanupResult };

/**
 * Stops a running execution (the stack's cleanup rule then cleans up its run). For one that has
 * ended, asks the Operator function to clean up the run it registered, if it is still registered:
 * the rule may have failed (a database unreachable then), and the run would refuse every later
 * run of the migration (pgferry.MigrationRunning). Only that execution's run is touched. An
 * execution that succeeded finished its run itself: there is nothing to clean up.
 */
export async function stopRun(executionArn: string, { abandon = false }: { abandon?: boolean } = {}): Promise<RunStop> {
  const execution = parseExecutionArn(executionArn);
  const described = await describeExecution(execution);
  const settle = async (status: string) => {
    const spec = parseInput(described);
    if ('reason' in spec) throw new AwsCallError(`Execution ${execution.name} is ${status}; cannot clean up its migration: ${spec.reason}.`, 'NoInput');
    const response = await invokeOperator(described.stateMachineArn!, { action: 'cleanup', spec: spec.value, execution: execution.arn, abandon });
    return { migrationName: specName(spec.value), cleanup: response.result };
  };
  if (described.status !== 'RUNNING') {
    const status = described.status ?? 'UNKNOWN';
    // A succeeded execution finished its run, or handed a paused one over to the execution that resumed it.
    if (status === 'SUCCEEDED') return { stopped: false, status };
    return { stopped: false, status, ...(await settle(status)) };
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
  // The cleanup rule pauses the run; an abandon drops its slot now, whichever of the two comes first.
  return { stopped: true, stopDate: response.stopDate ?? new Date(), ...(abandon ? await settle('RUNNING') : {}) };
}

export type RunResume = { resumed: false; reason: string } | { resumed: true; started: StartedMigration; migrationName?: string };

/**
 * Starts an execution of the same state machine that resumes the paused run `executionArn`
 * registered (its input: the resume of the spec it was started with). The paused execution,
 * if still waiting in its paused loop, sees the new one take over and ends.
 */
export async function resumeRun(executionArn: string): Promise<RunResume> {
  const execution = parseExecutionArn(executionArn);
  const described = await describeExecution(execution);
  const spec = parseInput(described);
  if ('reason' in spec) return { resumed: false, reason: `Cannot resume execution ${execution.name}: ${spec.reason}.` };
  const status = await invokeOperator(described.stateMachineArn!, { action: 'status', spec: spec.value });
  const phase = status.status?.phase;
  // A failed run resumes in mode full only: the new execution's takeover says so otherwise.
  if (phase !== 'paused' && phase !== 'failed') {
    return { resumed: false, reason: `Migration ${specName(spec.value) ?? ''} is ${phase ?? 'not registered on its target'}: only a paused run resumes.` };
  }
  const started = await startMigration({
    stateMachineArn: described.stateMachineArn!,
    spec: spec.value as MigrationSpec,
    input: { resume: true, spec: spec.value },
  });
  return { resumed: true, started, migrationName: specName(spec.value) };
}

/**
 * Runs the workflow file locally with aws-local-stepfunctions: every Task state gets a local
 * handler (integrations.ts) that returns what the AWS integration returns; task processes come
 * from the run's pool (task-pool.ts), started from task bundles (task-bundles.ts).
 */
import { randomUUID } from 'node:crypto';
import { connectSide, type EndpointSettings } from '../../engine/connect/index.js';
import { DefaultSecretsProvider } from '../../platform/secrets/index.js';
import { LOCAL_CALLBACK_ENV } from '../../platform/task-callback.js';
import { loadLocalDefinition, localFunctionArn, wiredBy, workflowValidation, type DefinitionOptions, type StateMap, type Wiring } from './definition.js';
import { ENTERED_TIME_MARKER, lambdaInvoker, localHandlers, TOKEN_MARKER, type LocalContinuation } from './integrations.js';
import { StateMachine, type StateMachineDefinition } from './interpreter.js';
import { beatWhileRunning } from './runner-heartbeat.js';
import { runBundles } from './task-bundles.js';
import { TaskProcesses, tasksStartedAtOnce, warmLoader, type TaskWatchers } from './task-pool.js';

/** One entry of the interpreter's event log (state entered/exited/failed, execution ended, …). */
export type WorkflowEvent = ReturnType<StateMachine['run']>['eventLogs'] extends AsyncGenerator<infer E> ? E : never;

export interface LocalRunOptions extends DefinitionOptions, TaskWatchers {
  onEvent?: (event: WorkflowEvent) => void;
  /** Milliseconds to wait instead of what a Wait state says (tests). */
  waitTimeOverrides?: Record<string, number>;
  /** Milliseconds between retries instead of what a Retry says (tests). */
  retryIntervalOverrides?: Record<string, number | number[]>;
  /** Environment given to every task child process on top of this process's own. */
  taskEnvironment?: NodeJS.ProcessEnv;
  /** `$$.Execution.Id` of the run, which names it in the control schema. @default `local:<random UUID>` */
  executionId?: string;
}

export interface LocalRunResult {
  status: 'SUCCEEDED' | 'FAILED' | 'ABORTED' | 'TIMED_OUT';
  output?: unknown;
  error?: string;
  cause?: string;
  /** `$$.Execution.Id` of the execution that ended (the last of a chain that continued as new). */
  executionId?: string;
}

/** What every task process of a run gets, before its own container environment. */
function taskProcessEnvironment(options: LocalRunOptions): NodeJS.ProcessEnv {
  return { ...process.env, ...options.taskEnvironment, [LOCAL_CALLBACK_ENV]: '1' };
}

/**
 * A stopped or timed-out execution never reaches its Cleanup state (on AWS neither: an
 * EventBridge rule on the execution's status invokes the Cleanup function). Locally the runner
 * invokes it the same way, so the slot and the fence do not outlive the run.
 */
async function cleanUpStoppedRun(definition: StateMachineDefinition, wiring: Wiring, spec: unknown, execution: string, status: 'ABORTED' | 'TIMED_OUT') {
  const state = (definition.States as unknown as StateMap).Cleanup;
  if (!state?.Parameters) return;
  const cleanup = lambdaInvoker(wiredBy(wiring.lambdas, localFunctionArn, state.Parameters.FunctionName, 'function', 'Cleanup'));
  const error = { Error: status === 'ABORTED' ? 'pgferry.Stopped' : 'States.Timeout', Cause: `The run was ${status === 'ABORTED' ? 'stopped' : 'timed out'}.` };
  await cleanup({ Payload: { spec, error, execution } }).catch(() => undefined);
}

/** The runner's heartbeat into the target of the validated spec, as the tasks reach it (their environment, their secrets). */
function runnerHeartbeat(spec: unknown, execution: string, options: LocalRunOptions) {
  const { name, target } = spec as { name: string; target: EndpointSettings };
  const secrets = new DefaultSecretsProvider(taskProcessEnvironment(options));
  return beatWhileRunning(() => connectSide('target', target, secrets, { applicationName: 'pgferry-runner', retryWindowMs: 0 }), name, execution);
}

/** Starts bundling every task while the first states run, and keeps a spare once they are built. */
function warmUp(wiring: Wiring, bundleOf: ReturnType<typeof runBundles>, processes: TaskProcesses): void {
  // A bundling error surfaces when its task starts.
  const bundles = wiring.tasks.map((task) => bundleOf(task));
  for (const bundle of bundles) bundle.catch(() => undefined);
  if (bundles.length > 0) void warmLoader(bundles).then((loader) => processes.keepSpare(loader), () => undefined);
}

/**
 * Runs the workflow to its end. Never throws for a failed execution: the result says how it
 * ended. An execution that continues as a new one (ContinueAsNew) is followed: the result is
 * that of the last execution of the chain.
 */
export async function runLocalWorkflow(input: unknown, options: LocalRunOptions = {}): Promise<LocalRunResult> {
  const continuation: LocalContinuation = {};
  const result = await runOneExecution(input, options, continuation);
  const next = continuation.next;
  if (result.status !== 'SUCCEEDED' || !next || options.signal?.aborted) return result;
  return runLocalWorkflow(next.input, { ...options, executionId: next.executionId });
}

/** The local state machine's id, as `$$.StateMachine.Id` gives it (ContinueAsNew starts it again). */
const LOCAL_STATE_MACHINE_ID = 'local:pgferry';

async function runOneExecution(input: unknown, options: LocalRunOptions, continuation: LocalContinuation): Promise<LocalRunResult> {
  const { definition, wiring } = await loadLocalDefinition(options);
  const processes = new TaskProcesses(taskProcessEnvironment(options));
  const bundleOf = runBundles();
  const stateMachine = new StateMachine(definition, { validationOptions: workflowValidation(options) });
  const handlers = localHandlers(definition, wiring, { processes, bundleOf, watchers: options }, continuation);
  warmUp(wiring, bundleOf, processes);
  const executionId = options.executionId ?? `local:${randomUUID()}`;
  const execution = stateMachine.run(input as never, {
    overrides: {
      taskResourceLocalHandlers: handlers as never,
      waitTimeOverrides: options.waitTimeOverrides,
      retryIntervalOverrides: options.retryIntervalOverrides,
    },
    // $$.Execution.Id names the run in the control schema, as the execution ARN does on AWS.
    context: {
      Execution: { Id: executionId, Input: input as never, StartTime: new Date().toISOString() },
      StateMachine: { Id: LOCAL_STATE_MACHINE_ID },
      Task: { Token: TOKEN_MARKER },
      State: { EnteredTime: ENTERED_TIME_MARKER },
    } as never,
  });
  const onAbort = () => {
    execution.abort();
    void processes.killAll();
  };
  options.signal?.addEventListener('abort', onAbort, { once: true });
  const killOnExit = () => void processes.killAll();
  process.once('exit', killOnExit);

  let ending: LocalRunResult | undefined;
  let validatedSpec: unknown;
  let heartbeat: ReturnType<typeof beatWhileRunning> | undefined;
  const events = (async () => {
    for await (const event of execution.eventLogs) {
      options.onEvent?.(event);
      if (event.type === 'StateExited' && event.state.name === 'ValidateSpec') {
        validatedSpec = (event.state.output as { spec?: unknown }).spec;
        processes.prepareFor(tasksStartedAtOnce(validatedSpec));
        if (validatedSpec) heartbeat ??= runnerHeartbeat(validatedSpec, executionId, options);
      }
      if (event.type === 'ExecutionFailed') ending = { status: 'FAILED', error: event.Error, cause: String(event.Cause ?? '') };
      if (event.type === 'ExecutionAborted') ending = { status: 'ABORTED' };
      if (event.type === 'ExecutionTimeout') ending = { status: 'TIMED_OUT' };
    }
  })();
  try {
    const output = await execution.result;
    await events;
    return { ...(ending ?? { status: 'SUCCEEDED', output }), executionId };
  } catch (error) {
    await events;
    const result: LocalRunResult = { ...(ending ?? { status: 'FAILED', error: (error as Error).name, cause: (error as Error).message }), executionId };
    if ((result.status === 'ABORTED' || result.status === 'TIMED_OUT') && validatedSpec) {
      await processes.killAll();
      await cleanUpStoppedRun(definition, wiring, validatedSpec, executionId, result.status);
    }
    return result;
  } finally {
    options.signal?.removeEventListener('abort', onAbort);
    process.off('exit', killOnExit);
    await heartbeat?.stop();
    // Waits for them: a task process left running would hold the slot, a snapshot or a walsender.
    await processes.killAll();
  }
}

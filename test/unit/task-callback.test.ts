import {
  SendTaskFailureCommand,
  SendTaskHeartbeatCommand,
  SendTaskSuccessCommand,
  SFNClient,
  TaskDoesNotExist,
  TaskTimedOut,
} from '@aws-sdk/client-sfn';
import { mockClient } from 'aws-sdk-client-mock';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { PgferryError } from '../../engine/errors.js';
import type { MigrationSpec } from '../../engine/spec/index.js';
import { goneReason, TaskGoneError } from '../../engine/steps/task.js';
import {
  HeartbeatingTaskCallback,
  IpcTaskCallback,
  isGoneTokenError,
  StepFunctionsTaskCallback,
  taskCallbackFromEnvironment,
  type TaskCallback,
} from '../../platform/task-callback.js';
import { runCallbackTask, type TaskContext, type TaskEnvironment } from '../../tasks/task.js';

const TOKEN = 'AQCEAAAAKgAAAAMAAAAAAAAAAT-token';
const sfn = mockClient(SFNClient);

afterEach(() => {
  sfn.reset();
  vi.useRealTimers();
  vi.restoreAllMocks();
  process.exitCode = undefined;
});

describe('StepFunctionsTaskCallback', () => {
  it('reports success with the output as JSON', async () => {
    sfn.on(SendTaskSuccessCommand).resolves({});
    const callback = new StepFunctionsTaskCallback(TOKEN);
    await callback.success({ slotName: 'pgferry_orders', consistentLsn: '0/16B3748' });
    await callback.success(undefined);
    expect(sfn.commandCalls(SendTaskSuccessCommand).map((c) => c.args[0].input)).toEqual([
      { taskToken: TOKEN, output: '{"slotName":"pgferry_orders","consistentLsn":"0/16B3748"}' },
      { taskToken: TOKEN, output: '{}' },
    ]);
  });

  it('reports failure with error and cause cut to the Step Functions limits', async () => {
    sfn.on(SendTaskFailureCommand).resolves({});
    await new StepFunctionsTaskCallback(TOKEN).failure(`pgferry.${'E'.repeat(300)}`, 'c'.repeat(40_000));
    const [input] = sfn.commandCalls(SendTaskFailureCommand).map((c) => c.args[0].input);
    expect(input!.taskToken).toBe(TOKEN);
    expect(input!.error).toHaveLength(256);
    expect(input!.error!.startsWith('pgferry.EEE')).toBe(true);
    expect(input!.cause).toHaveLength(32_768);
  });

  it('sends heartbeats with the token', async () => {
    sfn.on(SendTaskHeartbeatCommand).resolves({});
    await new StepFunctionsTaskCallback(TOKEN).heartbeat();
    expect(sfn.commandCalls(SendTaskHeartbeatCommand).map((c) => c.args[0].input)).toEqual([{ taskToken: TOKEN }]);
  });

  it('is what the environment gives on AWS; the local runner gets IPC', () => {
    expect(() => taskCallbackFromEnvironment({})).toThrow('PGFERRY_TASK_TOKEN is not set');
    expect(taskCallbackFromEnvironment({ PGFERRY_TASK_TOKEN: TOKEN })).toBeInstanceOf(StepFunctionsTaskCallback);
    expect(taskCallbackFromEnvironment({ PGFERRY_TASK_TOKEN: TOKEN, PGFERRY_LOCAL_CALLBACK: '1' })).toBeInstanceOf(IpcTaskCallback);
  });
});

/** A callback that records what it was told. */
function recordingCallback() {
  const calls: string[] = [];
  const callback: TaskCallback & { calls: string[]; failHeartbeatWith?: string } = {
    calls,
    success: async (output) => void calls.push(`success ${JSON.stringify(output)}`),
    failure: async (error, cause) => void calls.push(`failure ${error}: ${cause}`),
    heartbeat: async () => {
      calls.push('heartbeat');
      if (callback.failHeartbeatWith) throw Object.assign(new Error('no'), { name: callback.failHeartbeatWith });
    },
  };
  return callback;
}

describe('HeartbeatingTaskCallback', () => {
  beforeEach(() => vi.useFakeTimers());

  it('beats at once, then every minute until the result is reported, then stops', async () => {
    const inner = recordingCallback();
    const callback = new HeartbeatingTaskCallback(inner);
    await vi.advanceTimersByTimeAsync(0);
    expect(inner.calls).toEqual(['heartbeat']);
    await vi.advanceTimersByTimeAsync(59_999);
    expect(inner.calls).toEqual(['heartbeat']);
    await vi.advanceTimersByTimeAsync(1);
    await vi.advanceTimersByTimeAsync(60_000);
    expect(inner.calls).toEqual(['heartbeat', 'heartbeat', 'heartbeat']);
    expect(callback.reported).toBe(false);

    await callback.success({ snapshot: '00000003-00000002-1' });
    expect(callback.reported).toBe(true);
    expect(callback.beating).toBe(false);
    await vi.advanceTimersByTimeAsync(600_000);
    expect(inner.calls).toEqual(['heartbeat', 'heartbeat', 'heartbeat', 'success {"snapshot":"00000003-00000002-1"}']);
    expect(vi.getTimerCount()).toBe(0);
  });

  it('stops after reporting a failure too', async () => {
    const inner = recordingCallback();
    const callback = new HeartbeatingTaskCallback(inner, { intervalMs: 1000 });
    await vi.advanceTimersByTimeAsync(1000);
    await callback.failure('pgferry.SnapshotFailed', 'Cannot export the source snapshot');
    await vi.advanceTimersByTimeAsync(10_000);
    expect(inner.calls).toEqual(['heartbeat', 'heartbeat', 'failure pgferry.SnapshotFailed: Cannot export the source snapshot']);
  });

  it('logs a failed heartbeat and goes on, but stops once the token is gone', async () => {
    const inner = recordingCallback();
    const log = vi.fn();
    inner.failHeartbeatWith = 'ThrottlingException';
    const callback = new HeartbeatingTaskCallback(inner, { log });
    await vi.advanceTimersByTimeAsync(120_000);
    expect(inner.calls).toEqual(['heartbeat', 'heartbeat', 'heartbeat']);
    expect(callback.beating).toBe(true);
    expect(log).toHaveBeenCalledWith('heartbeat to the workflow failed (ThrottlingException: no)');
    inner.failHeartbeatWith = 'TaskTimedOut';
    await vi.advanceTimersByTimeAsync(600_000);
    expect(inner.calls).toEqual(['heartbeat', 'heartbeat', 'heartbeat', 'heartbeat']);
    expect(callback.beating).toBe(false);
    expect(log).toHaveBeenLastCalledWith('heartbeat to the workflow failed (TaskTimedOut: no)');
  });

  it('sends SendTaskHeartbeat through Step Functions', async () => {
    sfn.on(SendTaskHeartbeatCommand).resolves({});
    sfn.on(SendTaskSuccessCommand).resolves({});
    const callback = new HeartbeatingTaskCallback(new StepFunctionsTaskCallback(TOKEN));
    await vi.advanceTimersByTimeAsync(180_000);
    await callback.success({ resumed: true });
    await vi.advanceTimersByTimeAsync(180_000);
    expect(sfn.commandCalls(SendTaskHeartbeatCommand)).toHaveLength(4);
    expect(sfn.commandCalls(SendTaskSuccessCommand).map((c) => c.args[0].input)).toEqual([{ taskToken: TOKEN, output: '{"resumed":true}' }]);
  });
});

const throttled = () => Object.assign(new Error('Rate exceeded'), { name: 'ThrottlingException', $metadata: {} });
const timedOut = () => new TaskTimedOut({ message: "Task Timed Out: 'Provided task does not exist anymore'", $metadata: {} });

describe('HeartbeatingTaskCallback: when Step Functions no longer waits (gone)', () => {
  beforeEach(() => vi.useFakeTimers());

  it('aborts gone when SendTaskHeartbeat answers TaskTimedOut, with that error as the reason, and stops beating', async () => {
    sfn.on(SendTaskHeartbeatCommand).resolvesOnce({}).rejects(timedOut());
    const log = vi.fn();
    const callback = new HeartbeatingTaskCallback(new StepFunctionsTaskCallback(TOKEN), { log });
    const aborted = vi.fn();
    callback.gone.addEventListener('abort', aborted);
    await vi.advanceTimersByTimeAsync(0);
    expect(callback.gone.aborted).toBe(false);
    await vi.advanceTimersByTimeAsync(60_000);
    expect(callback.gone.aborted).toBe(true);
    expect(aborted).toHaveBeenCalledTimes(1);
    expect(callback.gone.reason).toMatchObject({ name: 'TaskTimedOut' });
    expect(goneReason(callback.gone)).toBe("the workflow no longer waits for this task (TaskTimedOut: Task Timed Out: 'Provided task does not exist anymore')");
    expect(callback.beating).toBe(false);
    await vi.advanceTimersByTimeAsync(600_000);
    expect(sfn.commandCalls(SendTaskHeartbeatCommand)).toHaveLength(2);
    expect(log).toHaveBeenLastCalledWith("heartbeat to the workflow failed (TaskTimedOut: Task Timed Out: 'Provided task does not exist anymore')");
  });

  it('aborts gone when SendTaskSuccess answers TaskTimedOut, and the success throws', async () => {
    sfn.on(SendTaskHeartbeatCommand).resolves({});
    sfn.on(SendTaskSuccessCommand).rejects(timedOut());
    const callback = new HeartbeatingTaskCallback(new StepFunctionsTaskCallback(TOKEN));
    await vi.advanceTimersByTimeAsync(0);
    expect(callback.gone.aborted).toBe(false);
    await expect(callback.success({ slotName: 'pgferry_orders' })).rejects.toMatchObject({ name: 'TaskTimedOut' });
    expect(callback.gone.aborted).toBe(true);
    expect(callback.reported).toBe(false);
    expect(callback.beating).toBe(false);
  });

  it('aborts gone on TaskDoesNotExist from SendTaskFailure too', async () => {
    sfn.on(SendTaskHeartbeatCommand).resolves({});
    sfn.on(SendTaskFailureCommand).rejects(new TaskDoesNotExist({ message: 'Task does not exist', $metadata: {} }));
    const callback = new HeartbeatingTaskCallback(new StepFunctionsTaskCallback(TOKEN));
    await expect(callback.failure('pgferry.SlotFailed', 'no')).rejects.toMatchObject({ name: 'TaskDoesNotExist' });
    expect(callback.gone.aborted).toBe(true);
  });

  it('keeps gone unaborted on other errors, and on a local run (IPC never reports a gone token)', async () => {
    sfn.on(SendTaskHeartbeatCommand).rejects(throttled());
    sfn.on(SendTaskSuccessCommand).rejects(throttled());
    const busy = new HeartbeatingTaskCallback(new StepFunctionsTaskCallback(TOKEN));
    await vi.advanceTimersByTimeAsync(180_000);
    await expect(busy.success({})).rejects.toMatchObject({ name: 'ThrottlingException' });
    expect(busy.gone.aborted).toBe(false);

    expect((new IpcTaskCallback(TOKEN) as TaskCallback).gone).toBeUndefined();
    // The local runner's channel: it works, then it is closed (the runner ended).
    const sent: unknown[] = [];
    let closed = false;
    const originalSend = process.send;
    process.send = ((message: unknown, _handle: unknown, _options: unknown, done: (error: Error | null) => void) => {
      if (closed) done(Object.assign(new Error('Channel closed'), { code: 'ERR_IPC_CHANNEL_CLOSED' }));
      else (sent.push(message), done(null));
      return !closed;
    }) as typeof process.send;
    try {
      const local = new HeartbeatingTaskCallback(new IpcTaskCallback(TOKEN));
      await vi.advanceTimersByTimeAsync(60_000);
      expect(sent).toEqual([{ pgferryTaskCallback: 'heartbeat', token: TOKEN }, { pgferryTaskCallback: 'heartbeat', token: TOKEN }]);
      closed = true;
      await vi.advanceTimersByTimeAsync(120_000);
      await expect(local.success({})).rejects.toThrow('Channel closed');
      expect(local.gone.aborted).toBe(false);
    } finally {
      process.send = originalSend;
    }
  });

  it('names the errors that mean the token is gone', () => {
    expect(['TaskTimedOut', 'TaskDoesNotExist', 'InvalidToken'].map((name) => isGoneTokenError(Object.assign(new Error('x'), { name })))).toEqual([true, true, true]);
    expect([new Error('x'), undefined, null, 'TaskTimedOut'].map(isGoneTokenError)).toEqual([false, false, false, false]);
  });
});

describe('a task the workflow waits for (runCallbackTask)', () => {
  beforeEach(() => {
    vi.useFakeTimers();
    vi.spyOn(console, 'error').mockImplementation(() => undefined);
    vi.spyOn(console, 'log').mockImplementation(() => undefined);
  });

  const fakeContext = async (): Promise<TaskContext> => ({
    migration: 'orders-move',
    spec: { name: 'orders-move' } as MigrationSpec,
    env: {},
    connectSource: () => Promise.reject(new Error('no database here')),
    connectTarget: () => Promise.reject(new Error('no database here')),
    log: () => undefined,
  });

  function environment(inner: TaskCallback, context = fakeContext): TaskEnvironment {
    return { env: {}, context, callback: () => inner };
  }

  it('beats from the start until the body reports, and exits 0', async () => {
    const inner = recordingCallback();
    let release!: () => void;
    const done = runCallbackTask(
      'replicate',
      async ({ callback }) => {
        await new Promise<void>((resolve) => (release = resolve)); // creating the slot waits for a long source transaction
        await callback.success({ slotName: 'pgferry_orders' });
        await new Promise((resolve) => setTimeout(resolve, 300_000)); // streaming
      },
      environment(inner),
    );
    await vi.advanceTimersByTimeAsync(150_000);
    expect(inner.calls).toEqual(['heartbeat', 'heartbeat', 'heartbeat']);
    release();
    await vi.advanceTimersByTimeAsync(300_000);
    await done;
    expect(inner.calls).toEqual(['heartbeat', 'heartbeat', 'heartbeat', 'success {"slotName":"pgferry_orders"}']);
    expect(process.exitCode).toBe(0);
    expect(vi.getTimerCount()).toBe(0);
  });

  it('reports a failure the body did not report, keeping a pgferry name, and stops beating', async () => {
    const inner = recordingCallback();
    const done = runCallbackTask(
      'replicate',
      async () => {
        await new Promise((resolve) => setTimeout(resolve, 90_000));
        throw new PgferryError('pgferry.ConnectionFailed', 'Cannot connect to the source (db:5432/app as migrator): timeout');
      },
      environment(inner),
    );
    await vi.advanceTimersByTimeAsync(90_000);
    await done;
    expect(inner.calls).toEqual([
      'heartbeat',
      'heartbeat',
      'failure pgferry.ConnectionFailed: The replicate task failed: Cannot connect to the source (db:5432/app as migrator): timeout',
    ]);
    expect(process.exitCode).toBe(1);
    expect(vi.getTimerCount()).toBe(0);
  });

  it('reports a failure before the spec is even loaded, and does not report twice', async () => {
    const inner = recordingCallback();
    await runCallbackTask('snapshot', async () => undefined, environment(inner, () => Promise.reject(new TypeError('PGFERRY_TARGET is not JSON'))));
    expect(inner.calls).toEqual(['heartbeat', 'failure pgferry.TaskFailed: The snapshot task failed: PGFERRY_TARGET is not JSON']);

    const reportedByBody = recordingCallback();
    await runCallbackTask(
      'snapshot',
      async ({ callback }) => {
        await callback.failure('pgferry.SnapshotFailed', 'Cannot export the source snapshot: gone');
        throw new Error('gone');
      },
      environment(reportedByBody),
    );
    expect(reportedByBody.calls).toEqual(['heartbeat', 'failure pgferry.SnapshotFailed: Cannot export the source snapshot: gone']);
    expect(process.exitCode).toBe(1);
    expect(vi.getTimerCount()).toBe(0);
  });

  it('does not report to a workflow that no longer waits, and exits 1 with the reason the body gives', async () => {
    const inner = recordingCallback();
    inner.failHeartbeatWith = 'TaskTimedOut';
    const errors = vi.mocked(console.error);
    await runCallbackTask(
      'snapshot',
      async ({ callback }) => {
        await vi.advanceTimersByTimeAsync(0);
        expect(callback.gone.aborted).toBe(true);
        throw new TaskGoneError(`${goneReason(callback.gone)}; not exporting a snapshot`);
      },
      environment(inner),
    );
    expect(inner.calls).toEqual(['heartbeat']);
    expect(process.exitCode).toBe(1);
    expect(errors).toHaveBeenLastCalledWith('snapshot failed: the workflow no longer waits for this task (TaskTimedOut: no); not exporting a snapshot');
    expect(vi.getTimerCount()).toBe(0);
  });
});

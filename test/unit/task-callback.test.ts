import { SendTaskFailureCommand, SendTaskHeartbeatCommand, SendTaskSuccessCommand, SFNClient } from '@aws-sdk/client-sfn';
import { mockClient } from 'aws-sdk-client-mock';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { PgferryError } from '../../engine/errors.js';
import type { MigrationSpec } from '../../engine/spec/index.js';
import {
  HeartbeatingTaskCallback,
  IpcTaskCallback,
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
});

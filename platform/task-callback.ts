/**
 * How a long-running task reports to the workflow that waits for it (`.waitForTaskToken`):
 * on AWS through SendTaskSuccess/Failure/Heartbeat, locally over the IPC channel to the
 * runner that started the task as a child process.
 */
import type { WorkflowCallback } from '../engine/steps/task.js';

export interface TaskCallback {
  success(output: unknown): Promise<void>;
  failure(error: string, cause: string): Promise<void>;
  heartbeat(): Promise<void>;
  /**
   * Aborted once the workflow no longer waits for this task (on AWS: Step Functions answered
   * TaskTimedOut, TaskDoesNotExist or InvalidToken), its reason that answer. Whatever the task
   * then creates, nobody will clean up; a callback that cannot tell (the local IPC one) has none.
   */
  readonly gone?: AbortSignal;
}

/** Environment variable that carries the task token into a task's container. */
export const TASK_TOKEN_ENV = 'PGFERRY_TASK_TOKEN';
/** Set by the local runner: report over IPC instead of calling Step Functions. */
export const LOCAL_CALLBACK_ENV = 'PGFERRY_LOCAL_CALLBACK';

export interface IpcCallbackMessage {
  pgferryTaskCallback: 'success' | 'failure' | 'heartbeat';
  token: string;
  output?: unknown;
  error?: string;
  cause?: string;
}

export class IpcTaskCallback implements TaskCallback {
  constructor(private readonly token: string) {}

  private send(message: Omit<IpcCallbackMessage, 'token'>): Promise<void> {
    const send = process.send?.bind(process);
    if (!send) throw new Error('No IPC channel to the local runner: start this task through "pgferry run".');
    return new Promise((resolve, reject) =>
      send({ ...message, token: this.token }, undefined, {}, (error: Error | null) => (error ? reject(error) : resolve())),
    );
  }

  success(output: unknown) {
    return this.send({ pgferryTaskCallback: 'success', output });
  }

  failure(error: string, cause: string) {
    return this.send({ pgferryTaskCallback: 'failure', error, cause });
  }

  heartbeat() {
    return this.send({ pgferryTaskCallback: 'heartbeat' });
  }
}

export class StepFunctionsTaskCallback implements TaskCallback {
  #sdk?: Promise<typeof import('@aws-sdk/client-sfn')>;
  #client?: import('@aws-sdk/client-sfn').SFNClient;

  constructor(private readonly token: string) {}

  private async client() {
    this.#sdk ??= import('@aws-sdk/client-sfn');
    const sdk = await this.#sdk;
    this.#client ??= new sdk.SFNClient({});
    return { sdk, client: this.#client };
  }

  async success(output: unknown) {
    const { sdk, client } = await this.client();
    await client.send(new sdk.SendTaskSuccessCommand({ taskToken: this.token, output: JSON.stringify(output ?? {}) }));
  }

  async failure(error: string, cause: string) {
    const { sdk, client } = await this.client();
    // Step Functions limits error to 256 and cause to 32768 characters.
    await client.send(
      new sdk.SendTaskFailureCommand({ taskToken: this.token, error: error.slice(0, 256), cause: cause.slice(0, 32768) }),
    );
  }

  async heartbeat() {
    const { sdk, client } = await this.client();
    await client.send(new sdk.SendTaskHeartbeatCommand({ taskToken: this.token }));
  }
}

export function taskCallbackFromEnvironment(env: NodeJS.ProcessEnv = process.env): TaskCallback {
  const token = env[TASK_TOKEN_ENV];
  if (!token) throw new Error(`${TASK_TOKEN_ENV} is not set: this task must be started by the workflow.`);
  return env[LOCAL_CALLBACK_ENV] === '1' ? new IpcTaskCallback(token) : new StepFunctionsTaskCallback(token);
}

/** How often a task that the workflow waits for says it is alive (the ASL's HeartbeatSeconds is 300). */
export const HEARTBEAT_INTERVAL_MS = 60_000;

/** Step Functions no longer waits for this token: further calls with it are pointless. */
const GONE_TOKEN_ERRORS = new Set(['TaskTimedOut', 'TaskDoesNotExist', 'InvalidToken']);

/** Whether an error of a callback means the workflow no longer waits for the task. */
export function isGoneTokenError(error: unknown): boolean {
  return GONE_TOKEN_ERRORS.has((error as { name?: string } | null)?.name ?? '');
}

/**
 * A TaskCallback that sends a heartbeat at once and then every `intervalMs` until the result
 * is reported (success or failure) or `stop()` is called, so that the workflow's HeartbeatSeconds
 * can tell a task that died before reporting (say, while slot creation waits on a long source
 * transaction) from one that is still working. The first heartbeat goes at once because the
 * workflow's clock started with RunTask, before Fargate pulled the image and started the
 * container. A failed heartbeat is logged, never thrown; once Step Functions says the token is
 * gone (to a heartbeat, success or failure), heartbeats stop and `gone` is aborted: the workflow
 * has moved on (to its Cleanup, after a timeout) and the task must not leave anything behind.
 */
export class HeartbeatingTaskCallback implements TaskCallback, WorkflowCallback {
  readonly #inner: TaskCallback;
  readonly #log: (message: string) => void;
  readonly #gone = new AbortController();
  #timer: NodeJS.Timeout | undefined;
  #reported = false;

  constructor(inner: TaskCallback, options: { intervalMs?: number; log?: (message: string) => void } = {}) {
    this.#inner = inner;
    this.#log = options.log ?? (() => undefined);
    this.#timer = setInterval(() => void this.beat(), options.intervalMs ?? HEARTBEAT_INTERVAL_MS);
    // The timer never keeps a task alive on its own.
    this.#timer.unref();
    void this.beat();
  }

  /** Whether success or failure has been reported. */
  get reported(): boolean {
    return this.#reported;
  }

  /** Whether heartbeats are still being sent. */
  get beating(): boolean {
    return this.#timer !== undefined;
  }

  /** Aborted, with Step Functions' error as the reason, once the token is gone. */
  get gone(): AbortSignal {
    return this.#gone.signal;
  }

  /** Notes a gone token in what a call threw; rethrows nothing. */
  #noteGone(error: unknown): void {
    if (!isGoneTokenError(error)) return;
    this.stop();
    if (!this.#gone.signal.aborted) this.#gone.abort(error);
  }

  stop(): void {
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = undefined;
  }

  private async beat(): Promise<void> {
    try {
      await this.#inner.heartbeat();
    } catch (error) {
      const name = (error as Error)?.name ?? 'Error';
      this.#log(`heartbeat to the workflow failed (${name}: ${(error as Error)?.message ?? String(error)})`);
      this.#noteGone(error);
    }
  }

  async success(output: unknown): Promise<void> {
    this.stop();
    try {
      await this.#inner.success(output);
    } catch (error) {
      this.#noteGone(error);
      throw error;
    }
    this.#reported = true;
  }

  async failure(error: string, cause: string): Promise<void> {
    this.stop();
    try {
      await this.#inner.failure(error, cause);
    } catch (thrown) {
      this.#noteGone(thrown);
      throw thrown;
    }
    this.#reported = true;
  }

  async heartbeat(): Promise<void> {
    try {
      await this.#inner.heartbeat();
    } catch (error) {
      this.#noteGone(error);
      throw error;
    }
  }

  /**
   * Reports the task's failure unless the workflow no longer waits for it (then there is nobody
   * to tell); a failure to report is logged, never thrown, so the task's own error stays the one
   * it ends with.
   */
  async reportFailure(error: string, cause: string): Promise<void> {
    if (this.gone.aborted) return;
    await this.failure(error, cause).catch((e) => this.#log(`cannot report the failure to the workflow: ${(e as Error)?.message ?? String(e)}`));
  }
}

/**
 * How a long-running task reports to the workflow that waits for it (`.waitForTaskToken`):
 * on AWS through SendTaskSuccess/Failure/Heartbeat, locally over the IPC channel to the
 * runner that started the task as a child process.
 */
export interface TaskCallback {
  success(output: unknown): Promise<void>;
  failure(error: string, cause: string): Promise<void>;
  heartbeat(): Promise<void>;
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

/**
 * A TaskCallback that sends a heartbeat at once and then every `intervalMs` until the result
 * is reported (success or failure) or `stop()` is called, so that the workflow's HeartbeatSeconds
 * can tell a task that died before reporting (say, while slot creation waits on a long source
 * transaction) from one that is still working. The first heartbeat goes at once because the
 * workflow's clock started with RunTask, before Fargate pulled the image and started the
 * container. A failed heartbeat is logged, never thrown; once Step Functions says the token is
 * gone, heartbeats stop.
 */
export class HeartbeatingTaskCallback implements TaskCallback {
  readonly #inner: TaskCallback;
  readonly #log: (message: string) => void;
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
      if (GONE_TOKEN_ERRORS.has(name)) this.stop();
    }
  }

  async success(output: unknown): Promise<void> {
    this.stop();
    await this.#inner.success(output);
    this.#reported = true;
  }

  async failure(error: string, cause: string): Promise<void> {
    this.stop();
    await this.#inner.failure(error, cause);
    this.#reported = true;
  }

  heartbeat(): Promise<void> {
    return this.#inner.heartbeat();
  }
}

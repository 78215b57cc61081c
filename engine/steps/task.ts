/**
 * What a task step (a state the workflow runs as a Fargate task) gets from the harness that
 * starts it (tasks/task.ts), and how it talks to a workflow that waits for it
 * (`.waitForTaskToken`). Engine types only: platform/task-callback.ts implements the callback,
 * so the steps import nothing from platform/ or the AWS SDK.
 */
import type pg from 'pg';
import type { AlertSink } from '../alerts/index.js';
import type { MigrationSpec } from '../spec/index.js';

export interface TaskStepContext {
  migration: string;
  /** The spec as ValidateSpec normalized it, read from the control schema. */
  spec: MigrationSpec;
  connectSource: () => Promise<pg.Client>;
  connectTarget: () => Promise<pg.Client>;
  log: (message: string) => void;
  /** Where the migration's alerts go (alerts.snsTopicArn; SNS on AWS); without one they are only recorded as events. */
  alertSink?: AlertSink;
}

/** How a step reports its result to the workflow that waits for it. */
export interface WorkflowCallback {
  success(output: unknown): Promise<void>;
  /**
   * Reports the step's failure unless the workflow no longer waits for it (then there is nobody
   * to tell); never throws, so the step's own error stays the one it ends with.
   */
  reportFailure(error: string, cause: string): Promise<void>;
}

/** The context of a step the workflow waits for. */
export interface CallbackStepContext extends TaskStepContext {
  callback: WorkflowCallback;
  /**
   * Aborted once the workflow no longer waits for this task (a timeout), its reason the
   * workflow's answer. Whatever the step creates after that, nobody will clean up: it must
   * create nothing more, and remove what it created.
   */
  gone: AbortSignal;
}

/** Thrown by a task that stops because the workflow no longer waits for it. */
export class TaskGoneError extends Error {
  override name = 'TaskGoneError';
}

/** "the workflow no longer waits for this task (TaskTimedOut: …)", from a `gone` signal. */
export function goneReason(signal: AbortSignal): string {
  const reason = signal.reason as { name?: string; message?: string } | undefined;
  const detail = reason?.message ? `${reason.name ?? 'Error'}: ${reason.message}` : String(reason ?? 'no reason given');
  return `the workflow no longer waits for this task (${detail})`;
}

/**
 * What a task throws once the workflow no longer waits for it (`signal` aborted): a
 * TaskGoneError as it is, any other error replaced by one giving the reason and `what` the task
 * did about it.
 */
export function goneError(error: unknown, signal: AbortSignal, what: string): TaskGoneError {
  return error instanceof TaskGoneError ? error : new TaskGoneError(`${goneReason(signal)}; ${what}`);
}

/** Throws a TaskGoneError giving the reason and `what` the task does about it, once `gone` is aborted. */
export function throwIfGone(gone: AbortSignal, what: string): void {
  if (gone.aborted) throw new TaskGoneError(`${goneReason(gone)}; ${what}`);
}

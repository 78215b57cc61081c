/**
 * The commands on a deployed pgferry stack: start and schedule an execution, and the status,
 * cutover and stop of one given by its ARN. The AWS SDK is loaded only by these commands (the
 * modules that call AWS are imported when they run); an ARN or a time the person typed wrong
 * is a usage error.
 */
import type { MigrationSpec } from '../../engine/spec/index.js';
import { InvalidArgumentError, parseExecutionArn, parseStateMachineArn } from '../../platform/aws/arns.js';
import { isoSeconds } from '../../platform/aws/names.js';
import { EXIT_FAILED, EXIT_OK, EXIT_USAGE, UsageError } from '../exit-codes.js';
import { cleanupDone, describeCleanup, formatRun, type Out } from '../format.js';
import { readSpecForAws } from '../spec-file.js';
import type { ThrottleChange } from '../../engine/flow/throttle.js';
import { reportThrottle } from './throttle.js';

const executions = () => import('../../platform/aws/executions.js');

async function withArguments(body: () => Promise<number>): Promise<number> {
  try {
    return await body();
  } catch (error) {
    if (error instanceof InvalidArgumentError) throw new UsageError(error.message);
    throw error;
  }
}

function nextCommands(executionArn: string, spec: MigrationSpec): string {
  const lines = [`  pgferry status ${executionArn}`];
  if (spec.mode !== 'full' && spec.cutover.mode === 'manual') lines.push(`  pgferry cutover ${executionArn}    (once it replicates)`);
  lines.push(`  pgferry stop ${executionArn}`);
  return `Next:\n${lines.join('\n')}\n`;
}

export async function startCommand(path: string, stateMachineArn: string, out: Out, err: Out): Promise<number> {
  return withArguments(async () => {
    const stateMachine = parseStateMachineArn(stateMachineArn);
    const read = await readSpecForAws(path, err);
    if (!read) return EXIT_USAGE;
    const started = await (await executions()).startMigration({ stateMachineArn, ...read });
    out.write(`Started migration ${read.spec.name} on ${stateMachine.name} (${stateMachine.region}): execution ${started.executionName}\n`);
    out.write(`  ${started.executionArn}\n`);
    if (read.spec.startAt) out.write(`It waits until ${read.spec.startAt} (the spec's startAt) before it touches a database.\n`);
    out.write(nextCommands(started.executionArn, read.spec));
    return EXIT_OK;
  });
}

export async function scheduleCommand(path: string, time: string, stateMachineArn: string, out: Out, err: Out): Promise<number> {
  return withArguments(async () => {
    const { parseScheduleTime, scheduleMigration } = await import('../../platform/aws/schedules.js');
    const stateMachine = parseStateMachineArn(stateMachineArn);
    const at = parseScheduleTime(time, new Date());
    const read = await readSpecForAws(path, err);
    if (!read) return EXIT_USAGE;
    const scheduled = await scheduleMigration({ stateMachineArn, ...read, at });
    out.write(`Scheduled migration ${read.spec.name} to start at ${isoSeconds(scheduled.at)} (UTC) on ${stateMachine.name} (${stateMachine.region}).\n`);
    out.write(`  schedule ${scheduled.scheduleName} in group ${scheduled.groupName}; it deletes itself once it has started the execution\n`);
    out.write(`  ${scheduled.scheduleArn}\n`);
    if (read.spec.startAt) out.write(`The execution then also waits until ${read.spec.startAt} (the spec's startAt).\n`);
    out.write(
      `Find the execution then with: aws stepfunctions list-executions --state-machine-arn ${stateMachineArn}\n` +
        `Cancel with: aws scheduler delete-schedule --name ${scheduled.scheduleName} --group-name ${scheduled.groupName} --region ${scheduled.region}\n`,
    );
    return EXIT_OK;
  });
}

export async function executionStatusCommand(executionArn: string, out: Out): Promise<number> {
  return withArguments(async () => {
    const run = await (await executions()).describeRun(executionArn);
    out.write(formatRun(run));
    return run.status === 'RUNNING' || run.status === 'SUCCEEDED' ? EXIT_OK : EXIT_FAILED;
  });
}

export async function executionCutoverCommand(executionArn: string, out: Out, err: Out): Promise<number> {
  return withArguments(async () => {
    const { name } = parseExecutionArn(executionArn);
    const outcome = await (await executions()).requestRunCutover(executionArn);
    if (!outcome.running) {
      err.write(`Execution ${name} is ${outcome.status}, not RUNNING: there is nothing to cut over.\n`);
      return EXIT_FAILED;
    }
    if (!outcome.result.requested) {
      err.write(`${outcome.result.reason}\n`);
      return EXIT_FAILED;
    }
    out.write(`${outcome.result.message}\nFollow it with: pgferry status ${executionArn}\n`);
    return EXIT_OK;
  });
}

export async function resumeExecutionCommand(executionArn: string, out: Out, err: Out): Promise<number> {
  return withArguments(async () => {
    const outcome = await (await executions()).resumeRun(executionArn);
    if (!outcome.resumed) {
      err.write(`${outcome.reason}\n`);
      return EXIT_FAILED;
    }
    out.write(`Resuming migration ${outcome.migrationName ?? ''}: execution ${outcome.started.executionName}\n  ${outcome.started.executionArn}\n`);
    out.write(`Follow it with: pgferry status ${outcome.started.executionArn}\n`);
    return EXIT_OK;
  });
}

export async function stopExecutionCommand(executionArn: string, { drop = false }: { drop?: boolean }, out: Out, err: Out): Promise<number> {
  return withArguments(async () => {
    const { name } = parseExecutionArn(executionArn);
    const outcome = await (await executions()).stopRun(executionArn, { abandon: drop });
    if (!outcome.stopped) {
      // It ended, but the stack's cleanup rule may have failed: the Operator cleaned up its run, if still registered.
      const { cleanup } = outcome;
      if (!cleanup) {
        err.write(`Execution ${name} is ${outcome.status}, not RUNNING: there is nothing to stop.\n`);
        return EXIT_FAILED;
      }
      const done = cleanupDone(cleanup);
      if (!cleanup.cleaned) {
        err.write(
          `Execution ${name} is ${outcome.status}, not RUNNING: there is nothing to stop.\n` +
            `${done.length ? `Cleaned up its run in part (${done.join(', ')})` : 'Nothing cleaned up'}: ${cleanup.reason ?? 'no reason given'}\n`,
        );
        return EXIT_FAILED;
      }
      out.write(`Execution ${name} had already ended (${outcome.status}). ${describeCleanup(outcome.migrationName ?? '(unnamed)', cleanup, executionArn)}\n`);
      return EXIT_OK;
    }
    out.write(`Stopped execution ${name} at ${isoSeconds(outcome.stopDate)}.\n`);
    if (outcome.cleanup) {
      out.write(`${describeCleanup(outcome.migrationName ?? '(unnamed)', outcome.cleanup, executionArn)}\n`);
      return outcome.cleanup.cleaned ? EXIT_OK : EXIT_FAILED;
    }
    out.write(
      "The stack's cleanup rule now pauses its run: it keeps the replication slot and publication, and lifts a cutover fence on the source if there is one. " +
        `Continue with pgferry resume ${executionArn}, or abandon it with pgferry stop ${executionArn} --drop.\n`,
    );
    return EXIT_OK;
  });
}

/** `pgferry throttle EXECUTION_ARN`: the new limits go through the Operator to the run's control schema. */
export async function executionThrottleCommand(executionArn: string, change: ThrottleChange, out: Out, err: Out): Promise<number> {
  return withArguments(async () => {
    const { name } = parseExecutionArn(executionArn);
    const outcome = await (await executions()).requestRunThrottle(executionArn, change);
    if (!outcome.running) {
      err.write(`Execution ${name} is ${outcome.status}, not RUNNING: there is nothing to throttle.\n`);
      return EXIT_FAILED;
    }
    return reportThrottle(outcome.result, out, err);
  });
}

/** `pgferry fallback|finish EXECUTION_ARN`: the request goes through the Operator; follow it with pgferry status. */
export async function executionAfterCutoverCommand(
  executionArn: string,
  action: 'fallback' | 'finish',
  { dropControl = false }: { dropControl?: boolean },
  out: Out,
  err: Out,
): Promise<number> {
  return withArguments(async () => {
    const result = await (await executions()).requestRunAfterCutover(executionArn, action, { dropControl });
    if (!result.requested) {
      err.write(`${result.reason}\n`);
      return EXIT_FAILED;
    }
    out.write(`${result.message}\n${'done' in result && result.done ? '' : `Follow it with: pgferry status ${executionArn}\n`}`);
    return EXIT_OK;
  });
}

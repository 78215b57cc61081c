/**
 * The pgferry command line. Exit codes: 0 success, 1 the migration or a check failed,
 * 2 invalid spec or usage.
 */
import { readFile } from 'node:fs/promises';
import { parseArgs } from 'node:util';
import { runPrecheck } from '../engine/precheck/index.js';
import { parseSpec, SpecInvalidError, specJsonSchema, validateSpec, type MigrationSpec } from '../engine/spec/index.js';
import { EXIT_FAILED, EXIT_OK, EXIT_USAGE, formatChecks, runMigration } from '../local/run.js';
import { DefaultSecretsProvider } from '../platform/secrets/index.js';
import { connectSide, type SecretsProvider } from '../engine/connect/index.js';
import { controlSchemaExists, migrationState } from '../engine/control/index.js';
import { formatStatus, readMigrationStatus, requestMigrationCutover } from '../engine/status.js';
import { cleanupStep, type CleanupResult } from '../engine/steps/cleanup.js';
import { stopFailure } from '../platform/aws/deployment.js';
import type { RunDescription } from '../platform/aws/workflow.js';

const HELP = `pgferry — online PostgreSQL to PostgreSQL migration

Usage:
  pgferry run SPEC [--report FILE]
                            Run the migration workflow locally (the same workflow file as on AWS);
                            --report writes the report as JSON too
  pgferry precheck SPEC     Check both databases against what the migration needs
  pgferry status SPEC       Show a running migration: phase, tables, CDC lag and apply rate
  pgferry cutover SPEC      Ask a running CDC migration to cut over (it waits until lag is
                            under cutover.maxLagSeconds, fences the source if the spec says
                            so, drains, sets sequences and compares)
  pgferry stop SPEC         End a local run whose runner is gone (killed, machine lost): mark
                            it failed, lift a cutover fence, drop its slot and publication
                            (Ctrl-C stops a run that is still going; a run on AWS is stopped
                            with pgferry stop EXECUTION_ARN)
  pgferry spec-schema       Print the JSON Schema of the migration spec
  pgferry demo              Start two local PostgreSQL servers and migrate a sample database
  pgferry --help | --version

On AWS (a deployed pgferry stack; AWS credentials as for the aws CLI, the region comes from the ARN):
  pgferry start SPEC --state-machine ARN
                            Start an execution of the state machine with SPEC as its input
  pgferry schedule SPEC --at TIME --state-machine ARN
                            Start it at TIME, an RFC 3339 timestamp with a zone
                            (e.g. 2026-12-01T02:00:00Z), through EventBridge Scheduler
  pgferry status EXECUTION_ARN
                            The execution's state, and the migration's status as above
  pgferry cutover EXECUTION_ARN
                            Ask the running execution to cut over, as above
  pgferry stop EXECUTION_ARN
                            Stop the execution; the stack then drops the slot and publication.
                            For an execution that has ended, clean up the run it left
                            registered (if the stack's cleanup failed), as stop SPEC does

SPEC is a JSON file (see README.md, "The spec"); on AWS its secrets must be Secrets Manager
ARNs. Exit codes: 0 success, 1 the migration or a check failed, 2 invalid spec or usage.
`;

export class UsageError extends Error {}

type Out = Pick<NodeJS.WriteStream, 'write'>;

async function readSpecFile(path: string): Promise<unknown> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    throw new UsageError(`Cannot read the spec file ${path}: ${code === 'ENOENT' ? 'no such file' : code}.`);
  }
  try {
    return JSON.parse(text);
  } catch (error) {
    throw new UsageError(`The spec file ${path} is not valid JSON: ${(error as Error).message}`);
  }
}

/** The spec as commands that only read it see it (no feature gate); undefined after reporting why it is invalid. */
async function readSpecForChecks(path: string, err: Out): Promise<MigrationSpec | undefined> {
  try {
    return parseSpec(await readSpecFile(path), { featureGate: false });
  } catch (error) {
    if (!(error instanceof SpecInvalidError)) throw error;
    err.write(`${error.message}\n`);
    return undefined;
  }
}

async function precheckCommand(path: string, out: Out, err: Out): Promise<number> {
  const spec = await readSpecForChecks(path, err);
  if (!spec) return EXIT_USAGE;
  const report = await runPrecheck(spec, new DefaultSecretsProvider());
  out.write(`Precheck of migration ${spec.name}:\n${formatChecks(report.checks)}\n`);
  out.write(report.ok ? 'All checks passed.\n' : 'Precheck failed.\n');
  return report.ok ? EXIT_OK : EXIT_FAILED;
}

async function withTarget<T>(spec: MigrationSpec, secrets: SecretsProvider, body: (target: import('pg').Client) => Promise<T>): Promise<T> {
  const target = await connectSide('target', spec.target, secrets, { applicationName: 'pgferry-cli', retryWindowMs: 0 });
  try {
    return await body(target);
  } finally {
    await target.end();
  }
}

/** status and cutover read the spec only to find the target that holds the migration's state. */
async function withControl(path: string, err: Out, body: (target: import('pg').Client, spec: MigrationSpec) => Promise<number>): Promise<number> {
  const spec = await readSpecForChecks(path, err);
  if (!spec) return EXIT_USAGE;
  return withTarget(spec, new DefaultSecretsProvider(), (target) => body(target, spec));
}

async function statusCommand(path: string, out: Out, err: Out): Promise<number> {
  return withControl(path, err, async (target, spec) => {
    const status = await readMigrationStatus(target, spec.name);
    if (!status) {
      err.write(`Migration ${spec.name} has not started on this target (no state in its control schema).\n`);
      return EXIT_FAILED;
    }
    out.write(`${formatStatus(status)}\n`);
    return status.phase === 'failed' ? EXIT_FAILED : EXIT_OK;
  });
}

async function cutoverCommand(path: string, out: Out, err: Out): Promise<number> {
  return withControl(path, err, async (target, spec) => {
    const result = await requestMigrationCutover(target, spec);
    if (!result.requested) {
      err.write(`${result.reason}\n`);
      return EXIT_FAILED;
    }
    out.write(`${result.message}\n`);
    return EXIT_OK;
  });
}

async function runCommand(path: string, reportFile: string | undefined, out: Out, err: Out): Promise<number> {
  const spec = await readSpecFile(path);
  const abort = new AbortController();
  const onSignal = () => abort.abort();
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  try {
    return (await runMigration(spec, { signal: abort.signal, out, err, reportFile })).exitCode;
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
}

// ---------------------------------------------------------------------------------------------
// On AWS: the SDK is loaded only by these commands.

type AwsWorkflow = typeof import('../platform/aws/workflow.js');

async function withAws(body: (aws: AwsWorkflow) => Promise<number>): Promise<number> {
  const aws = await import('../platform/aws/workflow.js');
  try {
    return await body(aws);
  } catch (error) {
    if (error instanceof aws.InvalidArgumentError) throw new UsageError(error.message);
    throw error;
  }
}

/** An argument starting with arn: is meant as an execution ARN (and refused if it is not one), anything else is a spec file. */
const isArn = (argument: string) => argument.startsWith('arn:');

/** The spec as start and schedule send it: checked as `run` checks it, and refused with secrets only this machine can read. */
async function readSpecForAws(path: string, err: Out, aws: AwsWorkflow): Promise<{ spec: MigrationSpec; input: unknown } | undefined> {
  const input = await readSpecFile(path);
  const result = validateSpec(input);
  const problems = [...(result.ok ? [] : result.problems), ...aws.localOnlySecretProblems(input)];
  if (!result.ok || problems.length > 0) {
    err.write(`${new SpecInvalidError(problems).message}\n`);
    return undefined;
  }
  return { spec: result.spec, input };
}

function nextCommands(executionArn: string, spec: MigrationSpec): string {
  const lines = [`  pgferry status ${executionArn}`];
  if (spec.mode !== 'full' && spec.cutover.mode === 'manual') lines.push(`  pgferry cutover ${executionArn}    (once it replicates)`);
  lines.push(`  pgferry stop ${executionArn}`);
  return `Next:\n${lines.join('\n')}\n`;
}

async function startCommand(path: string, stateMachineArn: string, out: Out, err: Out): Promise<number> {
  return withAws(async (aws) => {
    const stateMachine = aws.parseStateMachineArn(stateMachineArn);
    const read = await readSpecForAws(path, err, aws);
    if (!read) return EXIT_USAGE;
    const started = await aws.startMigration({ stateMachineArn, ...read });
    out.write(`Started migration ${read.spec.name} on ${stateMachine.name} (${stateMachine.region}): execution ${started.executionName}\n`);
    out.write(`  ${started.executionArn}\n`);
    if (read.spec.startAt) out.write(`It waits until ${read.spec.startAt} (the spec's startAt) before it touches a database.\n`);
    out.write(nextCommands(started.executionArn, read.spec));
    return EXIT_OK;
  });
}

async function scheduleCommand(path: string, time: string, stateMachineArn: string, out: Out, err: Out): Promise<number> {
  return withAws(async (aws) => {
    const stateMachine = aws.parseStateMachineArn(stateMachineArn);
    const at = aws.parseScheduleTime(time, new Date());
    const read = await readSpecForAws(path, err, aws);
    if (!read) return EXIT_USAGE;
    const scheduled = await aws.scheduleMigration({ stateMachineArn, ...read, at });
    out.write(`Scheduled migration ${read.spec.name} to start at ${aws.isoSeconds(scheduled.at)} (UTC) on ${stateMachine.name} (${stateMachine.region}).\n`);
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

const indentLines = (text: string, prefix: string) => text.split('\n').join(`\n${prefix}`);

function formatRun(run: RunDescription, { isoSeconds }: AwsWorkflow): string {
  const where = run.lastState ? ` (${run.status === 'RUNNING' ? 'in' : 'last state'} ${run.lastState})` : '';
  const lines = [`Execution ${run.executionName}: ${run.status}${where}`];
  const dates = [run.startDate && `started ${isoSeconds(run.startDate)}`, run.stopDate && `stopped ${isoSeconds(run.stopDate)}`].filter(Boolean);
  if (dates.length) lines.push(`  ${dates.join(', ')}`);
  if (run.error) lines.push(`  error: ${run.error}`);
  if (run.cause) lines.push(`  cause: ${indentLines(run.cause, '         ')}`);
  const progress = run.progress;
  if (!progress.available) lines.push(`Progress unavailable: ${progress.reason}`);
  else if (progress.status) lines.push(formatStatus(progress.status));
  else lines.push(`Migration ${run.migrationName ?? '(unnamed)'} has not started on its target yet (no state in its control schema).`);
  return `${lines.join('\n')}\n`;
}

async function awsStatusCommand(executionArn: string, out: Out): Promise<number> {
  return withAws(async (aws) => {
    const run = await aws.describeRun(executionArn);
    out.write(formatRun(run, aws));
    return run.status === 'RUNNING' || run.status === 'SUCCEEDED' ? EXIT_OK : EXIT_FAILED;
  });
}

async function awsCutoverCommand(executionArn: string, out: Out, err: Out): Promise<number> {
  return withAws(async (aws) => {
    const { name } = aws.parseExecutionArn(executionArn);
    const outcome = await aws.requestRunCutover(executionArn);
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

/** What a cleanup did, in words. */
function cleanupDone(result: CleanupResult): string[] {
  return [
    result.slotDropped && 'dropped the replication slot',
    result.publicationDropped && 'dropped the publication',
    result.unfenced && 'lifted the write fence on the source',
  ].filter((done): done is string => Boolean(done));
}

async function stopCommand(executionArn: string, out: Out, err: Out): Promise<number> {
  return withAws(async (aws) => {
    const { name } = aws.parseExecutionArn(executionArn);
    const outcome = await aws.stopRun(executionArn);
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
      const migration = outcome.migrationName ?? '(unnamed)';
      out.write(
        `Execution ${name} had already ended (${outcome.status}). Cleaned up the run it registered: ` +
          `migration ${migration} is marked failed${done.length ? `; ${done.join(', ')}` : ''}. It can run again.\n`,
      );
      return EXIT_OK;
    }
    out.write(
      `Stopped execution ${name} at ${aws.isoSeconds(outcome.stopDate)}.\n` +
        "The stack's cleanup rule now drops the replication slot and publication, and lifts a cutover fence on the source if there is one.\n",
    );
    return EXIT_OK;
  });
}

/** A run whose runner is gone: only a local one (an AWS execution's run is cleaned up through the Operator, which reaches the databases). */
async function localStopCommand(path: string, out: Out, err: Out): Promise<number> {
  const spec = await readSpecForChecks(path, err);
  if (!spec) return EXIT_USAGE;
  const secrets = new DefaultSecretsProvider();
  const registered = await withTarget(spec, secrets, async (target) => ((await controlSchemaExists(target)) ? migrationState(target, spec.name) : undefined));
  if (registered?.execution?.startsWith('arn:')) {
    err.write(
      `Migration ${spec.name} on this target is run by the AWS execution ${registered.execution} (phase ${registered.phase}): ` +
        `stop it with: pgferry stop ${registered.execution}\n`,
    );
    return EXIT_FAILED;
  }
  // A local run (or none registered: a leftover slot is still dropped); a run that registers meanwhile is left alone.
  const result = await cleanupStep(spec, secrets, stopFailure, registered?.execution ?? undefined);
  const done = cleanupDone(result);
  if (!result.cleaned) {
    err.write(`Migration ${spec.name}: ${result.reason}\n`);
    return EXIT_FAILED;
  }
  out.write(`Migration ${spec.name} is marked failed${done.length ? `; ${done.join(', ')}` : ''}. It can run again.\n`);
  return EXIT_OK;
}

export async function main(argv: string[], out: Out = process.stdout, err: Out = process.stderr): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      allowPositionals: true,
      options: {
        help: { type: 'boolean', short: 'h' },
        version: { type: 'boolean', short: 'v' },
        report: { type: 'string' },
        'state-machine': { type: 'string' },
        at: { type: 'string' },
      },
    });
  } catch (error) {
    err.write(`${(error as Error).message}\n\n${HELP}`);
    return EXIT_USAGE;
  }
  const { values, positionals } = parsed;
  const [command, ...rest] = positionals;
  if (values.version) {
    const pkg = JSON.parse(await readFile(new URL('../package.json', import.meta.url), 'utf8')) as { version: string };
    out.write(`pgferry ${pkg.version}\n`);
    return EXIT_OK;
  }
  if (values.help || !command) {
    (values.help ? out : err).write(HELP);
    return values.help ? EXIT_OK : EXIT_USAGE;
  }
  const commandOptions = (['report', 'state-machine', 'at'] as const).filter((option) => values[option] !== undefined);
  /** Checks the number of arguments and that only the options of this command are given. */
  const expectArgs = (count: number, usage: string, options: readonly string[] = []) => {
    if (rest.length !== count) throw new UsageError(`Usage: pgferry ${usage}`);
    const foreign = commandOptions.find((option) => !options.includes(option));
    if (foreign) throw new UsageError(`pgferry ${command} does not take --${foreign}.\nUsage: pgferry ${usage}`);
  };
  const required = (option: 'state-machine' | 'at', usage: string): string => {
    const value = values[option];
    if (!value) throw new UsageError(`pgferry ${command} needs --${option}.\nUsage: pgferry ${usage}`);
    return value;
  };
  try {
    switch (command) {
      case 'run':
        expectArgs(1, 'run SPEC [--report FILE]', ['report']);
        return await runCommand(rest[0]!, values.report, out, err);
      case 'precheck':
        expectArgs(1, 'precheck SPEC');
        return await precheckCommand(rest[0]!, out, err);
      case 'status':
        expectArgs(1, 'status SPEC | EXECUTION_ARN');
        return isArn(rest[0]!) ? await awsStatusCommand(rest[0]!, out) : await statusCommand(rest[0]!, out, err);
      case 'cutover':
        expectArgs(1, 'cutover SPEC | EXECUTION_ARN');
        return isArn(rest[0]!) ? await awsCutoverCommand(rest[0]!, out, err) : await cutoverCommand(rest[0]!, out, err);
      case 'start': {
        const usage = 'start SPEC --state-machine ARN';
        expectArgs(1, usage, ['state-machine']);
        return await startCommand(rest[0]!, required('state-machine', usage), out, err);
      }
      case 'schedule': {
        const usage = 'schedule SPEC --at TIME --state-machine ARN';
        expectArgs(1, usage, ['state-machine', 'at']);
        return await scheduleCommand(rest[0]!, required('at', usage), required('state-machine', usage), out, err);
      }
      case 'stop':
        expectArgs(1, 'stop SPEC | EXECUTION_ARN');
        return isArn(rest[0]!) ? await stopCommand(rest[0]!, out, err) : await localStopCommand(rest[0]!, out, err);
      case 'spec-schema':
        expectArgs(0, 'spec-schema');
        out.write(`${JSON.stringify(specJsonSchema(), null, 2)}\n`);
        return EXIT_OK;
      case 'demo': {
        expectArgs(0, 'demo');
        const { runDemo } = await import('../local/demo.js');
        return await runDemo(out, err);
      }
      default:
        throw new UsageError(`Unknown command "${command}".\n\n${HELP}`);
    }
  } catch (error) {
    if (error instanceof UsageError) {
      err.write(`${error.message}\n`);
      return EXIT_USAGE;
    }
    err.write(`pgferry: ${(error as Error).message ?? String(error)}\n`);
    return EXIT_FAILED;
  }
}

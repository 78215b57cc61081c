/**
 * The pgferry command line: parses the arguments and dispatches to a command (bin/commands/).
 * Exit codes: 0 success, 1 the migration or a check failed, 2 invalid spec or usage
 * (bin/exit-codes.ts).
 */
import { readFile } from 'node:fs/promises';
import { parseArgs } from 'node:util';
import { specJsonSchema } from '../engine/spec/index.js';
import { executionAfterCutoverCommand, executionCutoverCommand, executionThrottleCommand, executionStatusCommand, resumeExecutionCommand, scheduleCommand, startCommand, stopExecutionCommand } from './commands/aws.js';
import { fallbackCommand, finishCommand } from './commands/after-cutover.js';
import { cutoverCommand } from './commands/cutover.js';
import { detachedRunCommand } from './commands/detach.js';
import { precheckCommand } from './commands/precheck.js';
import { runCommand } from './commands/run.js';
import { statusCommand } from './commands/status.js';
import { stopCommand } from './commands/stop.js';
import { parseThrottleOptions, THROTTLE_USAGE, throttleCommand } from './commands/throttle.js';
import { EXIT_FAILED, EXIT_OK, EXIT_USAGE, UsageError } from './exit-codes.js';
import type { Out } from './format.js';

const HELP = `pgferry — online PostgreSQL to PostgreSQL migration

Usage:
  pgferry run SPEC [--report FILE] [--force] [--detach [--log FILE]]
                            Run the migration workflow locally (the same workflow file as on AWS);
                            --report writes the report as JSON too; --force lets it drop or
                            truncate (schema.existingTables) the tables a finished run loaded. A closed terminal does not
                            stop it; --detach runs it in the background, its output in --log
                            (default pgferry-<name>.log here): follow it with pgferry status SPEC
  pgferry precheck SPEC     Check both databases against what the migration needs
  pgferry status SPEC       Show a running migration: phase, tables, CDC lag and apply rate
  pgferry cutover SPEC      Ask a running CDC migration to cut over (it waits until lag is
                            under cutover.maxLagSeconds, fences the source if the spec says
                            so, drains, sets sequences and compares)
  pgferry fallback SPEC     Return to the source after a cutover with cutover.reverse: fences the
                            target, drains the writes it took into the source, sets the
                            sequences back and lifts the source's fence; prints the window
  pgferry finish SPEC [--drop-control]
                            End what a cutover leaves: the reverse stream (its slot and
                            publication on the target) and the fences; --drop-control also
                            removes the pgferry control schema from both sides
  pgferry resume SPEC [--report FILE]
                            Continue a paused run from what it has done: the units left to
                            copy, then streaming from the target's checkpoint (no reload)
  pgferry stop SPEC [--drop]
                            Pause a local run (a run with CDC keeps its slot, publication and
                            target data, and lifts a cutover fence), for instance one whose
                            runner is gone; --drop abandons it instead: marks it failed and
                            drops its slot and publication. A run that fails, or is stopped
                            with Ctrl-C, pauses the same way
  pgferry throttle SPEC [--rows N] [--bytes N|SIZE] [--off | --reset] [--phase load|cdc]
                            Change the flow control limits of a running migration: rows and
                            bytes per second, shared by the workers running, for the full
                            load and CDC (--phase: one of them); 0 lifts a limit, --off lifts
                            both, --reset goes back to the spec's; no option shows them.
                            Running workers pick the change up within a few seconds
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
  pgferry fallback EXECUTION_ARN
  pgferry finish EXECUTION_ARN [--drop-control]
                            Fall back to the source, or finish, as above
  pgferry throttle EXECUTION_ARN [options as above]
                            Change the running execution's flow control limits, as above
  pgferry resume EXECUTION_ARN
                            Start an execution that resumes the paused run of that execution
  pgferry stop EXECUTION_ARN [--drop]
                            Stop the execution; the stack then pauses its run (slot kept), or
                            with --drop abandons it (slot and publication dropped). For an
                            execution that has ended, settle the run it left registered (if
                            the stack's cleanup failed), as stop SPEC does

SPEC is a JSON file (see README.md, "The spec"); on AWS its secrets must be Secrets Manager
ARNs. Exit codes: 0 success, 1 the migration or a check failed, 2 invalid spec or usage.
`;

/** An argument starting with arn: is meant as an execution ARN (and refused if it is not one), anything else is a spec file. */
const isArn = (argument: string) => argument.startsWith('arn:');

/** The options of the commands (the rest are --help and --version). */
interface CommandOptions {
  report?: string;
  'state-machine'?: string;
  at?: string;
  drop?: boolean;
  force?: boolean;
  detach?: boolean;
  log?: string;
  'drop-control'?: boolean;
  rows?: string;
  bytes?: string;
  off?: boolean;
  reset?: boolean;
  phase?: string;
}

/** Checks of the arguments after the command, against what the command takes. */
function argumentChecks(command: string, rest: string[], values: CommandOptions) {
  const commandOptions = (['report', 'state-machine', 'at', 'drop', 'force', 'detach', 'log', 'drop-control', 'rows', 'bytes', 'off', 'reset', 'phase'] as const).filter((option) => values[option] !== undefined);
  return {
    /** Checks the number of arguments and that only the options of this command are given. */
    expectArgs(count: number, usage: string, options: readonly string[] = []) {
      if (rest.length !== count) throw new UsageError(`Usage: pgferry ${usage}`);
      const foreign = commandOptions.find((option) => !options.includes(option));
      if (foreign) throw new UsageError(`pgferry ${command} does not take --${foreign}.\nUsage: pgferry ${usage}`);
    },
    required(option: 'state-machine' | 'at', usage: string): string {
      const value = values[option];
      if (!value) throw new UsageError(`pgferry ${command} needs --${option}.\nUsage: pgferry ${usage}`);
      return value;
    },
  };
}

async function dispatch(command: string, rest: string[], values: CommandOptions, out: Out, err: Out): Promise<number> {
  const { expectArgs, required } = argumentChecks(command, rest, values);
  switch (command) {
    case 'run': {
      const usage = 'run SPEC [--report FILE] [--force] [--detach [--log FILE]]';
      expectArgs(1, usage, ['report', 'force', 'detach', 'log']);
      if (values.log !== undefined && !values.detach) throw new UsageError(`pgferry run takes --log only with --detach.\nUsage: pgferry ${usage}`);
      const force = values.force === true;
      if (values.detach) return await detachedRunCommand(rest[0]!, { reportFile: values.report, logFile: values.log, force }, out, err);
      return await runCommand(rest[0]!, values.report, out, err, { force });
    }
    case 'precheck':
      expectArgs(1, 'precheck SPEC');
      return await precheckCommand(rest[0]!, out, err);
    case 'status':
      expectArgs(1, 'status SPEC | EXECUTION_ARN');
      return isArn(rest[0]!) ? await executionStatusCommand(rest[0]!, out) : await statusCommand(rest[0]!, out, err);
    case 'cutover':
      expectArgs(1, 'cutover SPEC | EXECUTION_ARN');
      return isArn(rest[0]!) ? await executionCutoverCommand(rest[0]!, out, err) : await cutoverCommand(rest[0]!, out, err);
    case 'fallback':
      expectArgs(1, 'fallback SPEC | EXECUTION_ARN');
      return isArn(rest[0]!) ? await executionAfterCutoverCommand(rest[0]!, 'fallback', {}, out, err) : await fallbackCommand(rest[0]!, out, err);
    case 'finish': {
      expectArgs(1, 'finish SPEC | EXECUTION_ARN [--drop-control]', ['drop-control']);
      const dropControl = values['drop-control'] === true;
      return isArn(rest[0]!) ? await executionAfterCutoverCommand(rest[0]!, 'finish', { dropControl }, out, err) : await finishCommand(rest[0]!, { dropControl }, out, err);
    }
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
    case 'resume':
      expectArgs(1, 'resume SPEC [--report FILE] | EXECUTION_ARN', isArn(rest[0] ?? '') ? [] : ['report']);
      return isArn(rest[0]!) ? await resumeExecutionCommand(rest[0]!, out, err) : await runCommand(rest[0]!, values.report, out, err, { resume: true });
    case 'stop': {
      expectArgs(1, 'stop SPEC | EXECUTION_ARN [--drop]', ['drop']);
      const drop = values.drop === true;
      return isArn(rest[0]!) ? await stopExecutionCommand(rest[0]!, { drop }, out, err) : await stopCommand(rest[0]!, { drop }, out, err);
    }
    case 'throttle': {
      expectArgs(1, THROTTLE_USAGE, ['rows', 'bytes', 'off', 'reset', 'phase']);
      const change = parseThrottleOptions(values);
      return isArn(rest[0]!) ? await executionThrottleCommand(rest[0]!, change, out, err) : await throttleCommand(rest[0]!, change, out, err);
    }
    case 'spec-schema':
      expectArgs(0, 'spec-schema');
      out.write(`${JSON.stringify(specJsonSchema(), null, 2)}\n`);
      return EXIT_OK;
    case 'demo': {
      expectArgs(0, 'demo');
      const { runDemo } = await import('./commands/demo.js');
      return await runDemo(out, err);
    }
    default:
      throw new UsageError(`Unknown command "${command}".\n\n${HELP}`);
  }
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
        drop: { type: 'boolean' },
        force: { type: 'boolean' },
        detach: { type: 'boolean' },
        log: { type: 'string' },
        'drop-control': { type: 'boolean' },
        rows: { type: 'string' },
        bytes: { type: 'string' },
        off: { type: 'boolean' },
        reset: { type: 'boolean' },
        phase: { type: 'string' },
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
  try {
    return await dispatch(command, rest, values, out, err);
  } catch (error) {
    if (error instanceof UsageError) {
      err.write(`${error.message}\n`);
      return EXIT_USAGE;
    }
    err.write(`pgferry: ${(error as Error).message ?? String(error)}\n`);
    return EXIT_FAILED;
  }
}

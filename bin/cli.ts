/**
 * The pgferry command line. Exit codes: 0 success, 1 the migration or a check failed,
 * 2 invalid spec or usage.
 */
import { readFile } from 'node:fs/promises';
import { parseArgs } from 'node:util';
import { runPrecheck, type CheckResult } from '../engine/precheck/index.js';
import { parseSpec, SpecInvalidError, specJsonSchema, type MigrationSpec } from '../engine/spec/index.js';
import { createProgress } from '../local/progress.js';
import { runLocalWorkflow, type LocalRunResult } from '../local/runner.js';
import { DefaultSecretsProvider } from '../platform/secrets/index.js';

export const EXIT_OK = 0;
export const EXIT_FAILED = 1;
export const EXIT_USAGE = 2;

const HELP = `pgferry — online PostgreSQL to PostgreSQL migration

Usage:
  pgferry run SPEC          Run the migration workflow locally (the same workflow file as on AWS)
  pgferry precheck SPEC     Check both databases against what the migration needs
  pgferry spec-schema       Print the JSON Schema of the migration spec
  pgferry demo              Start two local PostgreSQL servers and migrate a sample database
  pgferry --help | --version

SPEC is a JSON file (see README.md, "The spec"). Exit codes: 0 success,
1 the migration or a check failed, 2 invalid spec or usage.
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

const statusIcon: Record<CheckResult['status'], string> = { pass: '✓', warn: '!', fail: '✗', skip: '-' };

export function formatChecks(checks: CheckResult[]): string {
  return checks
    .map((c) => `  ${statusIcon[c.status]} ${c.id.padEnd(30)} ${c.message}${c.remediation ? `\n    ${''.padEnd(30)} Fix: ${c.remediation}` : ''}`)
    .join('\n');
}

async function precheckCommand(path: string, out: Out, err: Out): Promise<number> {
  let spec: MigrationSpec;
  try {
    spec = parseSpec(await readSpecFile(path));
  } catch (error) {
    if (!(error instanceof SpecInvalidError)) throw error;
    err.write(`${error.message}\n`);
    return EXIT_USAGE;
  }
  const report = await runPrecheck(spec, new DefaultSecretsProvider());
  out.write(`Precheck of migration ${spec.name}:\n${formatChecks(report.checks)}\n`);
  out.write(report.ok ? 'All checks passed.\n' : 'Precheck failed.\n');
  return report.ok ? EXIT_OK : EXIT_FAILED;
}

export function exitCodeOf(result: LocalRunResult): number {
  if (result.status === 'SUCCEEDED') return EXIT_OK;
  return result.error === 'SpecInvalid' ? EXIT_USAGE : EXIT_FAILED;
}

export function describeRunResult(result: LocalRunResult): string {
  switch (result.status) {
    case 'SUCCEEDED': {
      const checks = (result.output as { precheck?: { checks?: CheckResult[] } } | undefined)?.precheck?.checks;
      return `Migration workflow succeeded.${checks ? `\nPrecheck:\n${formatChecks(checks)}` : ''}\n`;
    }
    case 'FAILED':
      return `Migration failed (${result.error}):\n${result.cause}\n`;
    case 'ABORTED':
      return 'Migration stopped.\n';
    case 'TIMED_OUT':
      return 'Migration timed out.\n';
  }
}

async function runCommand(path: string, out: Out, err: Out): Promise<number> {
  const spec = await readSpecFile(path);
  const progress = createProgress();
  const abort = new AbortController();
  const onSignal = () => abort.abort();
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  try {
    const result = await runLocalWorkflow(spec, {
      signal: abort.signal,
      onEvent: (event) => progress.onEvent(event),
      onTaskOutput: ({ task, line }) => progress.note(`[${task}] ${line}`),
    });
    progress.stop();
    (result.status === 'SUCCEEDED' ? out : err).write(describeRunResult(result));
    return abort.signal.aborted ? 130 : exitCodeOf(result);
  } finally {
    progress.stop();
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
}

export async function main(argv: string[], out: Out = process.stdout, err: Out = process.stderr): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      allowPositionals: true,
      options: { help: { type: 'boolean', short: 'h' }, version: { type: 'boolean', short: 'v' } },
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
  const expectArgs = (count: number, usage: string) => {
    if (rest.length !== count) throw new UsageError(`Usage: pgferry ${usage}`);
  };
  try {
    switch (command) {
      case 'run':
        expectArgs(1, 'run SPEC');
        return await runCommand(rest[0]!, out, err);
      case 'precheck':
        expectArgs(1, 'precheck SPEC');
        return await precheckCommand(rest[0]!, out, err);
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

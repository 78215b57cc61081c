/**
 * The pgferry command line. Exit codes: 0 success, 1 the migration or a check failed,
 * 2 invalid spec or usage.
 */
import { readFile } from 'node:fs/promises';
import { parseArgs } from 'node:util';
import { runPrecheck } from '../engine/precheck/index.js';
import { parseSpec, SpecInvalidError, specJsonSchema, type MigrationSpec } from '../engine/spec/index.js';
import { EXIT_FAILED, EXIT_OK, EXIT_USAGE, formatChecks, runMigration } from '../local/run.js';
import { DefaultSecretsProvider } from '../platform/secrets/index.js';
import { connectSide } from '../engine/connect/index.js';
import { formatStatus, readMigrationStatus, requestMigrationCutover } from '../engine/status.js';

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

/** status and cutover read the spec only to find the target that holds the migration's state. */
async function withControl(path: string, err: Out, body: (target: import('pg').Client, spec: MigrationSpec) => Promise<number>): Promise<number> {
  const spec = await readSpecForChecks(path, err);
  if (!spec) return EXIT_USAGE;
  const target = await connectSide('target', spec.target, new DefaultSecretsProvider(), { applicationName: 'pgferry-cli', retryWindowMs: 0 });
  try {
    return await body(target, spec);
  } finally {
    await target.end();
  }
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
  const expectArgs = (count: number, usage: string) => {
    if (rest.length !== count) throw new UsageError(`Usage: pgferry ${usage}`);
  };
  try {
    switch (command) {
      case 'run':
        expectArgs(1, 'run SPEC [--report FILE]');
        return await runCommand(rest[0]!, values.report, out, err);
      case 'precheck':
        expectArgs(1, 'precheck SPEC');
        return await precheckCommand(rest[0]!, out, err);
      case 'status':
        expectArgs(1, 'status SPEC');
        return await statusCommand(rest[0]!, out, err);
      case 'cutover':
        expectArgs(1, 'cutover SPEC');
        return await cutoverCommand(rest[0]!, out, err);
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

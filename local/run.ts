/**
 * Runs a migration locally as `pgferry run` and the demo show it: the workflow through the
 * local runner, live progress (states, and bars during the full load), then the report.
 */
import { writeFile } from 'node:fs/promises';
import { connectSide } from '../engine/connect/index.js';
import type { CheckResult } from '../engine/precheck/index.js';
import { buildReport, formatReport, type MigrationReport } from '../engine/report.js';
import type { MigrationSpec } from '../engine/spec/index.js';
import { DefaultSecretsProvider } from '../platform/secrets/index.js';
import { createProgress } from './progress.js';
import { runLocalWorkflow, type LocalRunOptions, type LocalRunResult } from './runner/index.js';
import { watchMigration } from './watch.js';

type Out = Pick<NodeJS.WriteStream, 'write'>;

export const EXIT_OK = 0;
export const EXIT_FAILED = 1;
export const EXIT_USAGE = 2;
export const EXIT_INTERRUPTED = 130;

export function exitCodeOf(result: LocalRunResult): number {
  if (result.status === 'SUCCEEDED') return EXIT_OK;
  return result.error === 'SpecInvalid' ? EXIT_USAGE : EXIT_FAILED;
}

export function formatChecks(checks: CheckResult[]): string {
  const icon: Record<CheckResult['status'], string> = { pass: '✓', warn: '!', fail: '✗', skip: '-' };
  return checks
    .map((c) => `  ${icon[c.status]} ${c.id.padEnd(30)} ${c.message}${c.remediation ? `\n    ${''.padEnd(30)} Fix: ${c.remediation}` : ''}`)
    .join('\n');
}

export function describeRunResult(result: LocalRunResult): string {
  switch (result.status) {
    case 'SUCCEEDED':
      return 'Migration succeeded.\n';
    case 'FAILED':
      return `Migration failed (${result.error}):\n${result.cause}\n`;
    case 'ABORTED':
      return 'Migration stopped.\n';
    case 'TIMED_OUT':
      return 'Migration timed out.\n';
  }
}

export interface RunMigrationOptions extends Pick<LocalRunOptions, 'signal' | 'waitTimeOverrides' | 'taskEnvironment'> {
  out: Out;
  err: Out;
  /** Where to write the report as JSON. */
  reportFile?: string;
}

export interface RunMigrationResult {
  exitCode: number;
  result: LocalRunResult;
  report?: MigrationReport;
}

export async function runMigration(input: unknown, options: RunMigrationOptions): Promise<RunMigrationResult> {
  const progress = createProgress();
  const secrets = new DefaultSecretsProvider();
  let spec: MigrationSpec | undefined;
  let watcher: ReturnType<typeof watchMigration> | undefined;
  const stopWatching = () => {
    void watcher?.stop();
    watcher = undefined;
  };
  let result: LocalRunResult;
  try {
    result = await runLocalWorkflow(input, {
      ...options,
      onEvent: (event) => {
        progress.onEvent(event);
        if (event.type === 'StateExited' && event.state.name === 'ValidateSpec') {
          spec = (event.state.output as { spec: MigrationSpec }).spec;
        }
        if (event.type === 'StateExited' && event.state.name === 'Precheck') {
          const checks = (event.state.output as { precheck?: { checks?: CheckResult[] } }).precheck?.checks ?? [];
          progress.note(`Precheck:\n${formatChecks(checks)}`);
        }
        if (event.type === 'StateEntered' && (event.state.name === 'FullLoad' || event.state.name === 'BeginApply') && spec && !watcher) {
          const target = spec.target;
          watcher = watchMigration(() => connectSide('target', target, secrets, { applicationName: 'pgferry-progress' }), spec.name, progress);
        }
        const loadEnded = (event.type === 'StateExited' || event.type === 'StateCaught') && event.state.name === 'FullLoad' && spec?.mode === 'full';
        if (loadEnded || (event.type === 'StateEntered' && event.state.name === 'FinishCutover')) stopWatching();
      },
      onTaskOutput: ({ task, stream, line }) => stream === 'stderr' && progress.note(`[${task}] ${line}`),
    });
  } finally {
    stopWatching();
    progress.stop();
  }
  let report: MigrationReport | undefined;
  if (spec) {
    const target = await connectSide('target', spec.target, secrets, { applicationName: 'pgferry-report' }).catch(() => undefined);
    if (target) {
      report = await buildReport(target, spec.name).finally(() => target.end());
      if (report?.tables.length || report?.objects.length) options.out.write(`\n${formatReport(report)}\n\n`);
    }
  }
  if (options.reportFile) {
    await writeFile(options.reportFile, `${JSON.stringify({ status: result.status, error: result.error, cause: result.cause, report }, null, 2)}\n`);
  }
  (result.status === 'SUCCEEDED' ? options.out : options.err).write(describeRunResult(result));
  const exitCode = options.signal?.aborted ? EXIT_INTERRUPTED : exitCodeOf(result);
  return { exitCode, result, report };
}

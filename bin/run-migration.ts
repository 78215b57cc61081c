/**
 * Runs a migration locally as `pgferry run` and the demo show it: the workflow through the
 * local runner, live progress (states, and bars during the full load), then the report.
 */
import { randomUUID } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import { connectSide } from '../engine/connect/index.js';
import type { CheckResult } from '../engine/precheck/index.js';
import { buildReport, type MigrationReport } from '../engine/report.js';
import type { MigrationSpec } from '../engine/spec/index.js';
import { runLocalWorkflow, type LocalRunOptions, type LocalRunResult } from '../local/runner/index.js';
import { describeFailure, type CaughtError } from '../platform/aws/step-functions-failure.js';
import { setLocalAlertPrinter } from '../platform/alerts.js';
import { DefaultSecretsProvider } from '../platform/secrets/index.js';
import { EXIT_INTERRUPTED, exitCodeOf } from './exit-codes.js';
import { describeRunResult, formatChecks, formatReport, type Out } from './format.js';
import { createProgress } from './progress.js';
import { TaskOutputFilter } from './task-output.js';
import { watchMigration } from './watch.js';

/** What the person reads when the run pauses: why, and the commands that continue or end it. */
function pausedNote(name: string, caught: CaughtError | undefined): string {
  const { error, cause } = describeFailure(caught ?? {});
  return (
    `Paused (${error}): ${cause}\n` +
    `Migration ${name} keeps its replication slot and the data it has moved. Put the cause right, then continue with ` +
    `pgferry resume SPEC (in another terminal, or here after Ctrl-C), or abandon it with pgferry stop SPEC --drop.`
  );
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
  const taskOutput = new TaskOutputFilter();
  const secrets = new DefaultSecretsProvider();
  let spec: MigrationSpec | undefined;
  let watcher: ReturnType<typeof watchMigration> | undefined;
  const stopWatching = () => {
    void watcher?.stop();
    watcher = undefined;
  };
  let result: LocalRunResult;
  const executionId = `local:${randomUUID()}`;
  let pausedNoted = false;
  // The migration's alerts (alerts.snsTopicArn; Lambda handlers run in this process) show above the progress.
  const restoreAlertPrinter = setLocalAlertPrinter((line) => progress.note(line));
  try {
    result = await runLocalWorkflow(input, {
      ...options,
      executionId,
      onEvent: (event) => {
        progress.onEvent(event);
        if (event.type === 'StateExited' && event.state.name === 'ValidateSpec') {
          spec = (event.state.output as { spec: MigrationSpec }).spec;
        }
        if (event.type === 'StateExited' && event.state.name === 'Precheck') {
          const checks = (event.state.output as { precheck?: { checks?: CheckResult[] } }).precheck?.checks ?? [];
          progress.note(`Precheck:\n${formatChecks(checks)}`);
        }
        // CatchUp: a resumed run may go straight to streaming.
        if (event.type === 'StateEntered' && ['FullLoad', 'BeginApply', 'CatchUp'].includes(event.state.name) && spec && !watcher) {
          const target = spec.target;
          // No connect retries: the watch tries again at its next poll, and says meanwhile that the target does not answer.
          const connectTarget = () => connectSide('target', target, secrets, { applicationName: 'pgferry-progress', retryWindowMs: 0 });
          watcher = watchMigration(connectTarget, spec.name, progress);
        }
        if (event.type === 'StateEntered' && event.state.name === 'Paused' && !pausedNoted) {
          pausedNoted = true;
          stopWatching();
          progress.note(pausedNote(spec?.name ?? 'the migration', (event.state.input as { error?: CaughtError }).error));
        }
        const loadEnded = (event.type === 'StateExited' || event.type === 'StateCaught') && event.state.name === 'FullLoad' && spec?.mode === 'full';
        if (loadEnded || (event.type === 'StateEntered' && event.state.name === 'FinishCutover')) stopWatching();
      },
      onTaskOutput: ({ task, stream, line }) => {
        const shown = taskOutput.shown(stream, line);
        if (shown) progress.note(`[${task}] ${shown}`);
      },
    });
  } finally {
    restoreAlertPrinter();
    stopWatching();
    progress.stop();
  }
  let report: MigrationReport | undefined;
  if (spec) {
    const target = await connectSide('target', spec.target, secrets, { applicationName: 'pgferry-report' }).catch(() => undefined);
    if (target) {
      const registered = await buildReport(target, spec.name).finally(() => target.end());
      // A run refused or failed before it registered must not show what an earlier run left.
      report = registered?.execution === (result.executionId ?? executionId) ? registered : undefined;
      if (report?.tables.length || report?.objects.length) options.out.write(`\n${formatReport(report)}\n\n`);
    }
  }
  if (options.reportFile) {
    await writeFile(options.reportFile, `${JSON.stringify({ status: result.status, error: result.error, cause: result.cause, report }, null, 2)}\n`);
  }
  (result.status === 'SUCCEEDED' ? options.out : options.err).write(describeRunResult(result));
  if (pausedNoted && result.status !== 'SUCCEEDED') options.err.write(`Migration ${spec?.name} stays paused: continue with pgferry resume SPEC, or abandon it with pgferry stop SPEC --drop.\n`);
  const exitCode = options.signal?.aborted ? EXIT_INTERRUPTED : exitCodeOf(result);
  return { exitCode, result, report };
}

/**
 * `pgferry run SPEC [--report FILE]`: the workflow run locally by a runner in a session of its
 * own (runner-session.ts), so that a closed terminal does not end it; Ctrl-C (or SIGTERM) stops it.
 * `pgferry resume SPEC [--report FILE]`: the same for a paused run, which goes on from what it
 * has done (the units left, then streaming from the target's checkpoint); a runner still
 * waiting in the paused run's loop sees this one take the run over and ends.
 */
import type { Out } from '../format.js';
import { runMigration } from '../run-migration.js';
import { findMigration } from '../../engine/control/index.js';
import { lostRunner } from '../../engine/lost-runner.js';
import { cleanupStep } from '../../engine/steps/cleanup.js';
import { DefaultSecretsProvider } from '../../platform/secrets/index.js';
import { readSpecFile, readSpecForChecks } from '../spec-file.js';
import { withTarget } from './target.js';
import { followRunner, isRunner } from './runner-session.js';

export async function runCommand(path: string, reportFile: string | undefined, out: Out, err: Out, { resume = false, force = false } = {}): Promise<number> {
  const spec = await readSpecFile(path);
  if (!isRunner()) return await followRunner(resume ? 'resume' : 'run', path, { reportFile, force }, err);
  const abort = new AbortController();
  const onSignal = () => abort.abort();
  // A runner has no terminal to lose (its own session); one started by hand keeps going as well.
  const onHangup = () => undefined;
  // A runner whose terminal or log is gone goes on without output (EIO, EPIPE).
  const ignoreOutputError = () => undefined;
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  process.on('SIGHUP', onHangup);
  for (const stream of [process.stdout, process.stderr]) stream.on('error', ignoreOutputError);
  try {
    if (resume) await pauseRunOfLostRunner(path, out, err);
    return (await runMigration(resume || force ? { spec, resume, force } : spec, { signal: abort.signal, out, err, reportFile })).exitCode;
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    process.off('SIGHUP', onHangup);
    for (const stream of [process.stdout, process.stderr]) stream.off('error', ignoreOutputError);
  }
}

/** A run whose runner is gone is still "running": pause it (its slot kept) so that the resume can take it over. */
async function pauseRunOfLostRunner(path: string, out: Out, err: Out): Promise<void> {
  const spec = await readSpecForChecks(path, err);
  if (!spec) return;
  const secrets = new DefaultSecretsProvider();
  const lost = await withTarget(spec, secrets, async (target) => {
    const message = await lostRunner(target, spec.name);
    return message && { message, execution: (await findMigration(target, spec.name))?.execution ?? undefined };
  }).catch(() => undefined);
  if (!lost) return;
  const result = await cleanupStep(spec, secrets, { Error: 'pgferry.RunnerLost', Cause: lost.message }, lost.execution);
  if (result.paused) out.write(`The runner of migration ${spec.name} is gone: the run is paused first, then resumed here.\n`);
}

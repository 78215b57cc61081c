/**
 * `pgferry run SPEC [--report FILE]`: the workflow run locally by a runner in a session of its
 * own (runner-session.ts), so that a closed terminal does not end it; Ctrl-C (or SIGTERM) stops it.
 */
import type { Out } from '../format.js';
import { runMigration } from '../run-migration.js';
import { readSpecFile } from '../spec-file.js';
import { followRunner, isRunner } from './runner-session.js';

export async function runCommand(path: string, reportFile: string | undefined, out: Out, err: Out): Promise<number> {
  const spec = await readSpecFile(path);
  if (!isRunner()) return await followRunner(path, reportFile, err);
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
    return (await runMigration(spec, { signal: abort.signal, out, err, reportFile })).exitCode;
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    process.off('SIGHUP', onHangup);
    for (const stream of [process.stdout, process.stderr]) stream.off('error', ignoreOutputError);
  }
}

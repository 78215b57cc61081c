/**
 * `pgferry run SPEC [--report FILE] [--detach [--log FILE]]`: the workflow run locally; Ctrl-C
 * (or SIGTERM) stops it. A closed terminal (SIGHUP) does not: the run goes on without output.
 */
import type { Out } from '../format.js';
import { runMigration } from '../run-migration.js';
import { readSpecFile } from '../spec-file.js';

export async function runCommand(path: string, reportFile: string | undefined, out: Out, err: Out): Promise<number> {
  const spec = await readSpecFile(path);
  const abort = new AbortController();
  const onSignal = () => abort.abort();
  const onHangup = () => {
    err.write(`The terminal closed: the run goes on without output. Follow it with: pgferry status ${path}\n`);
  };
  // Writing to a closed terminal or pipe fails (EIO, EPIPE): that must not end a migration.
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

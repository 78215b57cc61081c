/**
 * `pgferry run SPEC [--report FILE]`: the workflow run locally; Ctrl-C (or SIGTERM) stops it.
 * `pgferry resume SPEC [--report FILE]`: the same for a paused run, which goes on from what it
 * has done (the units left, then streaming from the target's checkpoint); a runner still
 * waiting in the paused run's loop sees this one take the run over and ends.
 */
import type { Out } from '../format.js';
import { runMigration } from '../run-migration.js';
import { readSpecFile } from '../spec-file.js';

export async function runCommand(path: string, reportFile: string | undefined, out: Out, err: Out, { resume = false } = {}): Promise<number> {
  const spec = await readSpecFile(path);
  const abort = new AbortController();
  const onSignal = () => abort.abort();
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  try {
    return (await runMigration(resume ? { resume: true, spec } : spec, { signal: abort.signal, out, err, reportFile })).exitCode;
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
}

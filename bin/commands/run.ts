/** `pgferry run SPEC [--report FILE]`: the workflow run locally; Ctrl-C (or SIGTERM) stops it. */
import type { Out } from '../format.js';
import { runMigration } from '../run-migration.js';
import { readSpecFile } from '../spec-file.js';

export async function runCommand(path: string, reportFile: string | undefined, out: Out, err: Out): Promise<number> {
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

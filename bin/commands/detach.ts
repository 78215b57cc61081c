/**
 * `pgferry run SPEC --detach [--log FILE]`: the runner goes on in the background, in a session
 * of its own (runner-session.ts), its output in a log file; this command says how to follow it.
 */
import { closeSync, openSync } from 'node:fs';
import { resolve } from 'node:path';
import { EXIT_FAILED, EXIT_OK, EXIT_USAGE } from '../exit-codes.js';
import type { Out } from '../format.js';
import { readSpecForChecks } from '../spec-file.js';
import { startRunner } from './runner-session.js';

/** Where a detached run writes when no --log is given: `pgferry-<name>.log` in the current folder. */
export const defaultLogFile = (name: string) => `pgferry-${name}.log`;

export async function detachedRunCommand(path: string, options: { reportFile?: string; logFile?: string; force?: boolean }, out: Out, err: Out): Promise<number> {
  // An invalid spec is refused here, where the user reads it, not in the log.
  const spec = await readSpecForChecks(path, err);
  if (!spec) return EXIT_USAGE;
  const logFile = resolve(options.logFile ?? defaultLogFile(spec.name));
  let log: number;
  try {
    log = openSync(logFile, 'a');
  } catch (error) {
    err.write(`Cannot open the log file ${logFile}: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}.\n`);
    return EXIT_USAGE;
  }
  const child = await startRunner('run', resolve(path), { reportFile: options.reportFile && resolve(options.reportFile), force: options.force }, ['ignore', log, log]);
  closeSync(log);
  if (child instanceof Error) {
    err.write(`Cannot start the run in the background: ${child.message}\n`);
    return EXIT_FAILED;
  }
  child.unref();
  out.write(
    `Migration ${spec.name} runs in the background as process ${child.pid}; its output goes to ${logFile}.\n` +
      `Follow it with: pgferry status ${path}   (or: tail -f ${logFile})\n` +
      `Stop it with: kill ${child.pid}\n`,
  );
  return EXIT_OK;
}

/**
 * `pgferry throttle SPEC | EXECUTION_ARN [--rows N] [--bytes N|SIZE] [--off] [--reset] [--phase load|cdc]`:
 * changes the flow control limits of a running migration (issue 15, item 3), or shows them
 * without options. Locally it writes them to the target's control schema; on AWS the Operator
 * function does (platform/aws/executions.ts).
 */
import { requestMigrationThrottle, type ThrottleChange, type ThrottleResult } from '../../engine/flow/throttle.js';
import { parseSize } from '../../engine/spec/index.js';
import { EXIT_FAILED, EXIT_OK, UsageError } from '../exit-codes.js';
import type { Out } from '../format.js';
import { withControl } from './target.js';

export const THROTTLE_USAGE = 'throttle SPEC | EXECUTION_ARN [--rows N] [--bytes N|SIZE] [--off | --reset] [--phase load|cdc]';

export interface ThrottleOptions {
  rows?: string;
  bytes?: string;
  off?: boolean;
  reset?: boolean;
  phase?: string;
}

const usage = (message: string) => new UsageError(`${message}\nUsage: pgferry ${THROTTLE_USAGE}`);

/** The change the options ask for; a usage error names the option and what it takes. */
export function parseThrottleOptions({ rows, bytes, off, reset, phase }: ThrottleOptions): ThrottleChange {
  if ((off || reset) && (rows !== undefined || bytes !== undefined)) throw usage('pgferry throttle takes --off or --reset instead of --rows and --bytes, not with them.');
  if (off && reset) throw usage('pgferry throttle takes --off (no limits) or --reset (the spec\'s limits), not both.');
  if (phase !== undefined && phase !== 'load' && phase !== 'cdc') throw usage(`--phase must be "load" (the full load) or "cdc", not "${phase}"; without it, both.`);
  const phases = phase ? [phase as 'load' | 'cdc'] : (['load', 'cdc'] as const).slice();
  if (off) return { phases, rowsPerSecond: 0, bytesPerSecond: 0 };
  if (reset) return { phases, rowsPerSecond: null, bytesPerSecond: null };
  const change: ThrottleChange = { phases };
  if (rows !== undefined) {
    if (!/^\d+$/.test(rows) || !Number.isSafeInteger(Number(rows))) throw usage(`--rows must be a whole number of rows per second, 0 to lift the limit; not "${rows}".`);
    change.rowsPerSecond = Number(rows);
  }
  if (bytes !== undefined) {
    const value = bytes.trim() === '0' ? 0 : parseSize(bytes);
    if (value === undefined) throw usage(`--bytes must be bytes per second, a number or a size like "10MB" (units B, kB, MB, GB, TB), 0 to lift the limit; not "${bytes}".`);
    change.bytesPerSecond = value;
  }
  return change;
}

/** Prints the outcome: what is in force now, or why nothing was changed. */
export function reportThrottle(result: ThrottleResult, out: Out, err: Out): number {
  if (!result.applied) {
    err.write(`${result.reason}\n`);
    return EXIT_FAILED;
  }
  out.write(`${result.message}\n`);
  return EXIT_OK;
}

export async function throttleCommand(path: string, change: ThrottleChange, out: Out, err: Out): Promise<number> {
  return withControl(path, err, async (target, spec) => reportThrottle(await requestMigrationThrottle(target, spec, change), out, err));
}

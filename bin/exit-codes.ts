/**
 * How `pgferry` exits: 0 success, 1 the migration or a check failed, 2 invalid spec or usage,
 * 130 a local run stopped by Ctrl-C (or SIGTERM).
 */
import type { LocalRunResult } from '../local/runner/index.js';

export const EXIT_OK = 0;
export const EXIT_FAILED = 1;
export const EXIT_USAGE = 2;
export const EXIT_INTERRUPTED = 130;

/** Something the person typed is wrong (arguments, the spec file): the CLI says what and exits with EXIT_USAGE. */
export class UsageError extends Error {}

export function exitCodeOf(result: LocalRunResult): number {
  if (result.status === 'SUCCEEDED') return EXIT_OK;
  return result.error === 'SpecInvalid' ? EXIT_USAGE : EXIT_FAILED;
}

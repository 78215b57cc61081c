/**
 * Which lines of its task processes a local run shows (issue 12, D8). Everything a task writes
 * to stderr (its failures) is shown; of its log (stdout) only what the user must know while it
 * happens — an interruption and its resume, a retry, a replaced streamer, the slot and the
 * drain — never the routine (each unit copied, each table compared); a message of the log that
 * comes again (the same words, other numbers) is shown at most once a minute, so an outage's
 * retries do not flood the terminal.
 */

/** A task's log line is `<ISO time> <task> <message>` (tasks/task.ts). */
const LOG_PREFIX = /^\d{4}-\d\d-\d\dT[\d:.]+Z \S+ /;
const NOTEWORTHY = /interrupted|resuming|retry|failed|giving up|cannot|restarted|ended the session|fenced|created slot|streaming from slot|drained|not reporting|did not reach|is gone/i;
const REPEAT_MS = 60_000;

export class TaskOutputFilter {
  readonly #lastShown = new Map<string, number>();

  constructor(private readonly now: () => number = Date.now) {}

  /** The text to show for a line a task wrote, or undefined to leave it out. */
  shown(stream: 'stdout' | 'stderr', line: string): string | undefined {
    const message = line.replace(LOG_PREFIX, '').trimEnd();
    if (stream === 'stderr') return message || undefined;
    if (!NOTEWORTHY.test(message)) return undefined;
    const key = message.replace(/\d+/g, '#');
    const last = this.#lastShown.get(key);
    if (last !== undefined && this.now() - last < REPEAT_MS) return undefined;
    this.#lastShown.set(key, this.now());
    return message;
  }
}

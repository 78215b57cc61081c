/**
 * The names pgferry gives the executions and schedules it creates, and times as its messages
 * show them. No AWS SDK: the CLI formats with these without loading it.
 */

/** 2026-12-01T02:00:00.000Z → 2026-12-01T02:00:00Z: a time as messages show it, to the second. */
export function isoSeconds(date: Date): string {
  return date.toISOString().replace(/\.\d+Z$/, 'Z');
}

/** 2026-12-01T02:00:00.000Z → 20261201T020000Z */
function compactUtcTimestamp(date: Date): string {
  return isoSeconds(date).replace(/[-:]/g, '');
}

const EXECUTION_NAME_MAX = 80;
const SCHEDULE_NAME_MAX = 64;

/** Spec names are [A-Za-z][A-Za-z0-9_-]{3,49}: valid in both kinds of names, only too long for schedules. */
function timestampedName(specName: string, date: Date, max: number): string {
  const suffix = `-${compactUtcTimestamp(date)}`;
  return `${specName.slice(0, max - suffix.length)}${suffix}`;
}

export const executionName = (specName: string, now: Date) => timestampedName(specName, now, EXECUTION_NAME_MAX);
export const scheduleName = (specName: string, at: Date) => timestampedName(specName, at, SCHEDULE_NAME_MAX);

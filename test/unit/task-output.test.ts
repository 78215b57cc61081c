/** Which task output lines a local run shows (issue 12, D8): the interruptions, never the routine, never a flood. */
import { describe, expect, it } from 'vitest';
import { TaskOutputFilter } from '../../bin/task-output.js';

describe('TaskOutputFilter', () => {
  it("shows a replicate task's interruption and resume from its log, without the log's time and task name", () => {
    const filter = new TaskOutputFilter();
    expect(filter.shown('stdout', '2026-12-05T10:00:00.000Z replicate replication interrupted (Connection terminated unexpectedly); resuming from the target\'s checkpoint in 500 ms')).toBe(
      "replication interrupted (Connection terminated unexpectedly); resuming from the target's checkpoint in 500 ms",
    );
    expect(filter.shown('stdout', '2026-12-05T10:00:01.000Z replicate streaming from slot pgferry_orders at 0/1000')).toBe('streaming from slot pgferry_orders at 0/1000');
  });

  it('leaves out the routine: each unit copied, each table compared', () => {
    const filter = new TaskOutputFilter();
    expect(filter.shown('stdout', '2026-12-05T10:00:00.000Z copy unit 3 public.items: 5000 rows, 262144 bytes')).toBeUndefined();
    expect(filter.shown('stdout', '2026-12-05T10:00:00.000Z compare public.items: match (5000 rows)')).toBeUndefined();
  });

  it('shows a message that comes again with other numbers at most once a minute', () => {
    let now = 0;
    const filter = new TaskOutputFilter(() => now);
    const retry = (ms: number) => filter.shown('stdout', `2026-12-05T10:00:00.000Z replicate replication interrupted (ECONNREFUSED); resuming from the target's checkpoint in ${ms} ms`);
    expect(retry(500)).toBeDefined();
    now = 30_000;
    expect(retry(1000)).toBeUndefined();
    now = 61_000;
    expect(retry(2000)).toBeDefined();
  });

  it('shows every stderr line: a task says there why it failed', () => {
    const filter = new TaskOutputFilter();
    expect(filter.shown('stderr', 'copy failed: permission denied for table items')).toBe('copy failed: permission denied for table items');
    expect(filter.shown('stderr', 'copy failed: permission denied for table items')).toBe('copy failed: permission denied for table items');
  });
});

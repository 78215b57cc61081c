import { describe, expect, it } from 'vitest';
import { createProgress } from '../../bin/progress.js';
import type { WorkflowEvent } from '../../local/runner/index.js';

/** A stream that is not a terminal: progress prints plain timestamped lines to it. */
function plainStream() {
  const written: string[] = [];
  const stream = { isTTY: false, write: (text: string) => written.push(text) > 0 } as unknown as NodeJS.WriteStream;
  /** The lines printed, without their timestamps and with elapsed times as N. */
  const lines = () =>
    written
      .join('')
      .split('\n')
      .filter(Boolean)
      .map((line) => line.replace(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z /, '').replace(/\(\d+\.\d s\)/, '(N s)'));
  return { stream, written, lines };
}

const event = (type: string, name: string, stateType = 'Task', extra: object = {}) => ({ type, state: { name, type: stateType }, ...extra }) as unknown as WorkflowEvent;

describe('createProgress on plain output', () => {
  it('prints a timestamped line when a shown state starts, ends, retries or fails', () => {
    const { stream, written, lines } = plainStream();
    const progress = createProgress(stream);
    progress.onEvent(event('StateEntered', 'Precheck'));
    progress.onEvent(event('StateExited', 'Precheck'));
    progress.onEvent(event('StateEntered', 'CopyWorker', 'Task', { index: 1 }));
    progress.onEvent(event('StateRetried', 'CopyWorker', 'Task', { index: 1, retry: { attempt: 2 } }));
    progress.onEvent(event('StateCaught', 'CopyWorker', 'Task', { index: 1 }));
    progress.stop();
    expect(written[0]).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z Precheck started\n$/);
    expect(lines()).toEqual([
      'Precheck started',
      'Precheck done (N s)',
      'CopyWorker #2 started',
      'CopyWorker #2 retrying (attempt 2)',
      'CopyWorker #2 failed (N s)',
    ]);
  });

  it('leaves out passes, choices and the CDC loop states, and exits of states it did not show', () => {
    const { stream, lines } = plainStream();
    const progress = createProgress(stream);
    progress.onEvent(event('StateEntered', 'Prepare', 'Pass'));
    progress.onEvent(event('StateEntered', 'IsCdc', 'Choice'));
    progress.onEvent(event('StateEntered', 'CatchUp'));
    progress.onEvent(event('StateEntered', 'ReplicationStatus'));
    progress.onEvent(event('StateExited', 'ReplicationStatus'));
    progress.onEvent(event('StateExited', 'Prepare', 'Pass'));
    progress.stop();
    expect(lines()).toEqual([]);
  });

  it('ends the states still running when the execution ends: failed, or stopped when aborted', () => {
    const failed = plainStream();
    const progress = createProgress(failed.stream);
    progress.onEvent(event('StateEntered', 'FullLoad', 'Map'));
    progress.onEvent({ type: 'ExecutionFailed' } as unknown as WorkflowEvent);
    expect(failed.lines()).toEqual(['FullLoad started', 'FullLoad failed (N s)']);

    const aborted = plainStream();
    const other = createProgress(aborted.stream);
    other.onEvent(event('StateEntered', 'BeginApply'));
    other.onEvent(event('StateEntered', 'Compare'));
    other.onEvent({ type: 'ExecutionAborted' } as unknown as WorkflowEvent);
    expect(aborted.lines()).toEqual(['BeginApply started', 'Compare started', 'BeginApply stopped (N s)', 'Compare stopped (N s)']);
  });

  it('prints notes as they come, and only the first detail line, at most every few seconds', () => {
    const { stream, lines } = plainStream();
    const progress = createProgress(stream);
    progress.note('[copy] a line from a task');
    progress.detail([]);
    progress.detail(['[███░] 3 of 4', '    a table']);
    progress.detail(['[████] 4 of 4']);
    progress.stop();
    expect(lines()).toEqual(['[copy] a line from a task', '[███░] 3 of 4']);
  });
});

/**
 * Every path of the workflow, walked over its graph: once the replication slot may exist, every
 * way out of every state leads to a finish (FinishMigration), or to Cleanup, which pauses the
 * run (keeping the slot) or, for a run that cannot pause, fails it. Nothing skips Cleanup.
 */
import { describe, expect, it } from 'vitest';
import { migrationDefinition } from '../../state-machines/definition.js';

type State = {
  Type: string;
  Next?: string;
  End?: boolean;
  Default?: string;
  Choices?: { Next: string }[];
  Catch?: { ErrorEquals: string[]; Next: string }[];
  ItemProcessor?: { States: Record<string, State> };
};
const states = migrationDefinition.States as unknown as Record<string, State>;

/** Where a state goes next: normally, and when it fails. */
function exits(name: string): { normal: string[]; failure: string[] } {
  const state = states[name]!;
  const normal = [state.Next, state.Default, ...(state.Choices ?? []).map((choice) => choice.Next)].filter((next): next is string => Boolean(next));
  return { normal, failure: (state.Catch ?? []).map((catcher) => catcher.Next) };
}

/** Every state reachable from `from`, stopping at (not walking past) the states in `stopAt`. */
function reachable(from: string, stopAt: ReadonlySet<string>): Set<string> {
  const seen = new Set<string>();
  const pending = [from];
  while (pending.length > 0) {
    const name = pending.pop()!;
    if (seen.has(name)) continue;
    seen.add(name);
    if (stopAt.has(name) && name !== from) continue;
    const { normal, failure } = exits(name);
    pending.push(...normal, ...failure);
  }
  return seen;
}

/** The failure handling: Cleanup and what it leads to. */
const failureHandling = new Set(['Cleanup', 'PausedOrFailed', 'Paused', 'PausedNext', 'PausedWait', 'HandedOver', 'MigrationAbandoned', 'DescribeFailure', 'MigrationFailed', 'MigrationFailedUndescribed']);

/** After cutover with cutover.reverse: its failures go back to its loop, never to Cleanup, which would lift the source's fence. */
const reverseLoop = new Set(['StartReverse', 'ReverseWait', 'ReverseStatus', 'ReverseNext', 'CountReverseTurn', 'ReverseHistoryLeft', 'Fallback', 'FinishAfterCutover']);

describe('the workflow graph', () => {
  const afterSlot = reachable('StartReplication', new Set(['Cleanup', 'StartReverse']));
  const work = [...new Set([...afterSlot, ...reachable('PlanResume', new Set(['Cleanup', 'ReverseWait']))])].filter(
    (name) => !failureHandling.has(name) && !reverseLoop.has(name),
  );

  it('sends every failure of every state after the slot exists to Cleanup', () => {
    expect(work.length).toBeGreaterThan(15);
    for (const name of work) {
      const state = states[name]!;
      if (state.Type === 'Task' || state.Type === 'Map') {
        expect(state.Catch, `${name} has no catcher`).toBeDefined();
        expect(state.Catch!.map((c) => [c.ErrorEquals, c.Next]), name).toEqual([[['States.ALL'], 'Cleanup']]);
      } else {
        expect(['Choice', 'Wait', 'Pass', 'Succeed'], `${name} is a ${state.Type}`).toContain(state.Type);
      }
    }
  });

  it('ends a run after the slot exists only by finishing it: every other end goes through Cleanup', () => {
    const ends = work.filter((name) => ['Succeed', 'Fail'].includes(states[name]!.Type)).sort();
    // ContinuedAsNew: the run goes on in the execution ContinueAsNew started.
    expect(ends).toEqual(['ContinuedAsNew', 'Done']);
    expect(exits('ContinueAsNew').normal).toEqual(['ContinuedAsNew']);
    expect(exits('FinishMigration').normal).toEqual(['ReverseArmed']);
    expect(exits('ReverseArmed').normal.sort()).toEqual(['Done', 'StartReverse']);
  });

  it('keeps a cut-over run in its Reverse loop on every failure there, and leaves it only by fallback, finish or continuing as new', () => {
    for (const name of reverseLoop) {
      const state = states[name]!;
      if (state.Type === 'Task') expect(state.Catch!.map((c) => [c.ErrorEquals, c.Next]), name).toEqual([[['States.ALL'], 'ReverseWait']]);
    }
    const ends = [...reachable('StartReverse', new Set(['ContinueAsNew']))].filter((name) => ['Succeed', 'Fail'].includes(states[name]!.Type)).sort();
    expect(ends).toEqual(['Done']);
    expect(exits('Fallback').normal).toEqual(['Done']);
    expect(exits('FinishAfterCutover').normal).toEqual(['Done']);
  });

  it('pauses from Cleanup, and leaves the paused loop only when resumed elsewhere or abandoned', () => {
    expect(exits('Cleanup').normal).toEqual(['PausedOrFailed']);
    expect(exits('PausedOrFailed').normal).toContain('Paused');
    const fromPaused = reachable('Paused', new Set());
    const endsFromPaused = [...fromPaused].filter((name) => ['Succeed', 'Fail'].includes(states[name]!.Type)).sort();
    expect(endsFromPaused).toEqual(['ContinuedAsNew', 'HandedOver', 'MigrationAbandoned', 'MigrationFailed', 'MigrationFailedUndescribed']);
    // The only way out to a failure: the status function itself failing, which leaves the run paused.
    expect(exits('Paused').failure).toEqual(['DescribeFailure']);
    // A paused run is never cleaned up from its loop (that would be an abandon), except when ContinueAsNew itself fails.
    expect([...reachable('Paused', new Set(['ContinueAsNew']))].includes('Cleanup')).toBe(false);
  });

  it('copy workers are inside a Map whose failure is caught', () => {
    const inner = states.FullLoad!.ItemProcessor!.States;
    expect(Object.keys(inner)).toEqual(['CopyWorker']);
    expect(states.FullLoad!.Catch![0]!.Next).toBe('Cleanup');
  });
});

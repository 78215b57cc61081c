/** When a local run's runner counts as gone (issue 12, item 6), and what the user reads then. */
import { describe, expect, it } from 'vitest';
import type { RunnerBeat } from '../../engine/control/index.js';
import { lostRunnerMessage, runnerGone } from '../../engine/lost-runner.js';

const beat = (over: Partial<RunnerBeat> = {}): RunnerBeat => ({
  execution: 'local:1',
  phase: 'replicate',
  pid: 4242,
  host: 'laptop',
  heartbeatAt: new Date('2026-12-05T10:00:00Z'),
  ageSeconds: 3,
  ...over,
});
const alive = () => true;
const dead = () => false;

describe('runnerGone', () => {
  it('is gone once silent for longer than 30 s, wherever it ran', () => {
    expect(runnerGone(beat({ ageSeconds: 31, host: 'elsewhere' }), 'laptop', alive)).toBe(true);
    expect(runnerGone(beat({ ageSeconds: 20, host: 'elsewhere' }), 'laptop', alive)).toBe(false);
  });

  it('is gone sooner when it ran on this machine and its process no longer exists', () => {
    expect(runnerGone(beat({ ageSeconds: 11 }), 'laptop', dead)).toBe(true);
    expect(runnerGone(beat({ ageSeconds: 11 }), 'laptop', alive)).toBe(false);
    // A beat just missed is no proof (another machine of the same name may run it).
    expect(runnerGone(beat({ ageSeconds: 6 }), 'laptop', dead)).toBe(false);
  });

  it('is never gone for an ended or paused run, an AWS execution, or a runner that never beat', () => {
    for (const phase of ['done', 'failed', 'paused']) expect(runnerGone(beat({ phase, ageSeconds: 600 }), 'laptop', dead)).toBe(false);
    expect(runnerGone(beat({ execution: 'arn:aws:states:eu-west-1:1:execution:m:x', ageSeconds: 600 }), 'laptop', dead)).toBe(false);
    expect(runnerGone(beat({ heartbeatAt: null, ageSeconds: null }), 'laptop', dead)).toBe(false);
  });
});

describe('lostRunnerMessage', () => {
  it('says since when, where it ran, and names both ways on', () => {
    const message = lostRunnerMessage('orders', beat({ ageSeconds: 42.4 }));
    expect(message).toContain('the runner of this run (process 4242 on laptop) is gone since 2026-12-05T10:00:00.000Z, 42 s without a heartbeat');
    expect(message).toContain('continue with pgferry resume SPEC, or abandon with pgferry stop SPEC --drop');
  });
});

import { describe, expect, it } from 'vitest';
import { describeFailure } from '../../platform/aws/step-functions-failure.js';

describe('describeFailure', () => {
  it("takes a Lambda's error type and message from its JSON cause", () => {
    const cause = JSON.stringify({ errorType: 'pgferry.SchemaConflict', errorMessage: 'public.orders exists on the target', trace: [] });
    expect(describeFailure({ Error: 'pgferry.SchemaConflict', Cause: cause })).toEqual({
      error: 'pgferry.SchemaConflict',
      cause: 'public.orders exists on the target',
    });
    expect(describeFailure({ Error: 'Lambda.Unknown', Cause: JSON.stringify({ errorMessage: 'out of memory' }) })).toEqual({
      error: 'Lambda.Unknown',
      cause: 'out of memory',
    });
  });

  it('words a stopped ECS task: its definition, why it stopped, and how each container exited', () => {
    const task = {
      TaskDefinitionArn: 'arn:aws:ecs:eu-west-1:123456789012:task-definition/pgferry-copy:3',
      StoppedReason: 'Essential container in task exited',
      Containers: [{ Name: 'copy', ExitCode: 1 }, { Reason: 'OutOfMemoryError' }],
    };
    expect(describeFailure({ Error: 'States.TaskFailed', Cause: JSON.stringify(task) })).toEqual({
      error: 'States.TaskFailed',
      cause:
        'The pgferry-copy:3 task stopped: Essential container in task exited — copy exited with code 1; ' +
        'container exited with code unknown (OutOfMemoryError).',
    });
    expect(describeFailure({ Error: 'States.TaskFailed', Cause: JSON.stringify({ StoppedReason: 'Task stopped by user' }) }).cause).toBe(
      'The Fargate task stopped: Task stopped by user.',
    );
  });

  it('explains timeouts, keeping the cause Step Functions gave', () => {
    expect(describeFailure({ Error: 'States.Timeout' })).toEqual({ error: 'States.Timeout', cause: 'A step ran longer than its time limit.' });
    expect(describeFailure({ Error: 'States.Timeout', Cause: 'after 3600 s' }).cause).toBe('A step ran longer than its time limit. after 3600 s');
    expect(describeFailure({ Error: 'States.HeartbeatTimeout', Cause: '' }).cause).toMatch(/^A task \(snapshot holder or CDC streamer\) sent no heartbeat/);
  });

  it('passes any other cause through, and names the error when there is no cause', () => {
    expect(describeFailure({ Error: 'States.Runtime', Cause: 'not JSON at all' })).toEqual({ error: 'States.Runtime', cause: 'not JSON at all' });
    expect(describeFailure({ Error: 'States.Runtime', Cause: '{"other": true}' })).toEqual({ error: 'States.Runtime', cause: '{"other": true}' });
    expect(describeFailure({})).toEqual({ error: 'pgferry.Failed', cause: 'The migration failed with pgferry.Failed.' });
  });
});

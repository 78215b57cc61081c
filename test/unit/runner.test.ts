import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { lambdaFunctions } from '../../lambdas/registry.js';
import { StateMachine } from 'aws-local-stepfunctions';
import { loadLocalDefinition, repositoryRoot, runLocalWorkflow, substituteLocally, workflowFile, workflowValidation, type LocalRunOptions } from '../../local/runner/index.js';
import { fargateTasks } from '../../tasks/registry.js';
import { sleep, waitFor as waitUntil } from '../support/wait.js';

const fixtureDir = join(import.meta.dirname, '..', 'fixtures', 'runner');
const wiring: LocalRunOptions = {
  definitionFile: join(fixtureDir, 'workflow.asl.json'),
  lambdas: [
    {
      name: 'Echo',
      entry: 'test/fixtures/runner/echo-lambda.ts',
      arnPlaceholder: 'EchoFunctionArn',
      timeoutSeconds: 10,
      memoryMb: 128,
      needsDatabase: false,
    },
  ],
  tasks: [
    {
      name: 'Fixture',
      entry: 'test/fixtures/runner/task.ts',
      taskDefinitionPlaceholder: 'FixtureTaskDefinitionArn',
      containerName: 'fixture',
    },
  ],
};

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'pgferry-runner-test-'));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

const isAlive = (pid: number) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

/** Every wait names what it waits for, so a stuck test says where instead of timing out as a whole. */
const waitFor = (what: string, condition: () => boolean) => waitUntil(what, async () => condition(), 60_000, 20);

function pidOf(mode: string): number {
  return Number(readFileSync(join(dir, `${mode}.pid`), 'utf8'));
}

describe('local runner', () => {
  it('invokes Lambdas in-process and runs tasks as child processes, returning what AWS returns', async () => {
    const result = await runLocalWorkflow({ syncMode: 'exit0', callbackMode: 'report', dir }, wiring);
    expect(result.status).toBe('SUCCEEDED');
    expect(result.output).toMatchObject({
      echo: { echoed: { syncMode: 'exit0', callbackMode: 'report', dir }, status: 200 },
      sync: { exitCode: 0, lastStatus: 'STOPPED' },
      callback: { reported: true, env: 'report' },
    });
  });

  it('gives a Lambda error the errorType as the error name and a Lambda-shaped Cause', async () => {
    const result = await runLocalWorkflow({ failWith: 'PrecheckFailed', dir }, wiring);
    expect(result).toMatchObject({ status: 'FAILED', error: 'PrecheckFailed' });
    expect(JSON.parse(result.cause!)).toMatchObject({ errorType: 'PrecheckFailed', errorMessage: 'asked to fail with PrecheckFailed' });
  });

  it('names an unexpected handler error pgferry.Internal', async () => {
    const result = await runLocalWorkflow({ crash: true, dir }, wiring);
    expect(result).toMatchObject({ status: 'FAILED', error: 'pgferry.Internal' });
    expect(JSON.parse(result.cause!).errorMessage).toBe('unexpected crash');
  });

  it('fails a .sync task that exits non-zero with States.TaskFailed and the task description', async () => {
    const result = await runLocalWorkflow({ syncMode: 'exit3', callbackMode: 'report', dir }, wiring);
    expect(result).toMatchObject({ status: 'FAILED', error: 'States.TaskFailed' });
    const task = JSON.parse(result.cause!);
    expect(task.Containers[0]).toMatchObject({ Name: 'fixture', ExitCode: 3 });
    expect(task.Containers[0].Reason).toContain('relation "missing" does not exist');
  });

  it('resolves a callback task with the failure the task reports', async () => {
    const result = await runLocalWorkflow({ syncMode: 'exit0', callbackMode: 'report-failure', dir }, wiring);
    expect(result).toMatchObject({ status: 'FAILED', error: 'pgferry.ReplicationFailed', cause: 'the slot could not be created' });
  });

  it('fails a callback task that exits without reporting', async () => {
    const result = await runLocalWorkflow({ syncMode: 'exit0', callbackMode: 'exit-silently', dir }, wiring);
    expect(result).toMatchObject({ status: 'FAILED', error: 'States.TaskFailed' });
    expect(JSON.parse(result.cause!).StoppedReason).toContain('exited before it reported');
  });

  it("runs a task's code as it is now: a bundle is reused only while the files it was built from are unchanged", async () => {
    const entry = `test/fixtures/runner/generated-task-${process.pid}.ts`;
    const file = join(fixtureDir, '..', '..', '..', entry);
    const writeTask = (version: string) =>
      writeFileSync(file, `import { writeFileSync } from 'node:fs';\nimport './task.ts';\nwriteFileSync(process.env.FIXTURE_DIR + '/' + process.env.FIXTURE_MODE + '.version', ${JSON.stringify(version)});\n`);
    const changing: LocalRunOptions = { ...wiring, tasks: [{ ...wiring.tasks![0]!, entry }] };
    const versionAfterRun = async () => {
      const result = await runLocalWorkflow({ syncMode: 'exit0', callbackMode: 'report', dir }, changing);
      expect(result.status).toBe('SUCCEEDED');
      // The .sync task's: the run waits for it to exit (a callback task may still be running when the run ends).
      return readFileSync(join(dir, 'exit0.version'), 'utf8');
    };
    try {
      writeTask('first');
      expect(await versionAfterRun()).toBe('first');
      expect(await versionAfterRun()).toBe('first');
      writeTask('second, longer');
      expect(await versionAfterRun()).toBe('second, longer');
    } finally {
      rmSync(file, { force: true });
    }
  });

  it('kills the task process when the run is aborted', async () => {
    const abort = new AbortController();
    const run = runLocalWorkflow({ syncMode: 'hang', callbackMode: 'report', dir }, { ...wiring, signal: abort.signal });
    // The file exists a moment before its content does.
    const pid = await waitUntil('the task to write its pid file', () => (existsSync(join(dir, 'hang.pid')) ? pidOf('hang') : 0), 60_000, 20);
    expect(isAlive(pid)).toBe(true);
    abort.abort();
    const result = await Promise.race([run, sleep(60_000).then(() => Promise.reject(new Error('the aborted run did not end within 60 s')))]);
    expect(result.status).toBe('ABORTED');
    await waitFor(`task process ${pid} to end`, () => !isAlive(pid));
  });

  it('kills the task process when its state times out', async () => {
    // The pid from the spawn, not the task's pid file: on a busy machine the time limit may strike before the task writes it.
    let pid = 0;
    const result = await runLocalWorkflow(
      { syncMode: 'exit0', callbackMode: 'hang', dir },
      { ...wiring, onTaskStarted: (task) => task.state === 'CallbackTask' && (pid = task.pid) },
    );
    expect(result.status).toBe('FAILED');
    expect(result.error).toBe('States.Timeout');
    expect(pid).toBeGreaterThan(0);
    await waitFor(`task process ${pid} to end`, () => !isAlive(pid));
  });

  it('reports events for every state it enters and exits', async () => {
    const events: string[] = [];
    await runLocalWorkflow(
      { syncMode: 'exit0', callbackMode: 'report', dir },
      { ...wiring, onEvent: (e) => events.push(e.type === 'StateEntered' || e.type === 'StateExited' ? `${e.type}:${e.state.name}` : e.type) },
    );
    expect(events).toEqual([
      'ExecutionStarted',
      'StateEntered:Echo',
      'StateExited:Echo',
      'StateEntered:SyncTask',
      'StateExited:SyncTask',
      'StateEntered:CallbackTask',
      'StateExited:CallbackTask',
      'ExecutionSucceeded',
    ]);
  });

  it('refuses a placeholder that names nothing', () => {
    expect(() => substituteLocally('{"x": "${NoSuchFunctionArn}"}', { lambdas: [], tasks: [] })).toThrow(
      /\$\{NoSuchFunctionArn\}/,
    );
  });
});

describe('the workflow file', () => {
  type State = { Type: string; TimeoutSeconds?: number; Catch?: unknown[]; Retry?: unknown[]; Next?: string; Default?: string; Choices?: { Next: string }[] };

  it('wires every Task state to a real handler, with a time limit, retries and a catch', async () => {
    const { definition } = await loadLocalDefinition();
    const states = definition.States as unknown as Record<string, State>;
    const tasks = Object.entries(states).filter(([, s]) => s.Type === 'Task');
    expect(tasks.length).toBeGreaterThanOrEqual(3);
    for (const [name, state] of tasks) {
      expect(state.TimeoutSeconds, name).toBeGreaterThan(0);
      expect(state.Retry?.length, name).toBeGreaterThan(0);
      expect(state.Catch?.length, name).toBeGreaterThan(0);
    }
  });

  it('names only registered Lambdas and tasks, and uses every registered Lambda', () => {
    const text = readFileSync(workflowFile, 'utf8');
    const placeholders = new Set([...text.matchAll(/\$\{([A-Za-z0-9_]+)\}/g)].map((m) => m[1]));
    const known = new Set([
      ...lambdaFunctions.map((f) => f.arnPlaceholder),
      ...fargateTasks.map((t) => t.taskDefinitionPlaceholder),
      'ClusterArn',
      'TaskSubnetIds',
      'TaskSecurityGroupIds',
    ]);
    for (const placeholder of placeholders) expect(known, placeholder).toContain(placeholder);
    // Operator functions are invoked by the CLI, never by the workflow.
    for (const fn of lambdaFunctions) {
      if (fn.operator) expect(placeholders, fn.name).not.toContain(fn.arnPlaceholder);
      else expect(placeholders, fn.name).toContain(fn.arnPlaceholder);
    }
  });

  it('waits for startAt, then runs the precheck, and fails readably without a database', async () => {
    const entered: string[] = [];
    const result = await runLocalWorkflow(
      {
        name: 'wait-then-check',
        startAt: new Date(Date.now() + 3_600_000).toISOString(),
        source: { secret: 'env:PGFERRY_TEST_UNSET_SOURCE' },
        target: { secret: 'env:PGFERRY_TEST_UNSET_TARGET' },
      },
      { waitTimeOverrides: { WaitForStartTime: 0 }, onEvent: (e) => e.type === 'StateEntered' && entered.push(e.state.name) },
    );
    expect(entered.slice(0, 4)).toEqual(['ValidateSpec', 'HasStartTime', 'WaitForStartTime', 'Precheck']);
    expect(result).toMatchObject({ status: 'FAILED', error: 'PrecheckFailed' });
    expect(result.cause).toContain('environment variable PGFERRY_TEST_UNSET_SOURCE is not set');
  });

  it('is valid ASL for the interpreter, which runs it without validating again', async () => {
    const { definition } = await loadLocalDefinition();
    expect(() => new StateMachine(definition, { validationOptions: { checkArn: false } })).not.toThrow();
    expect(workflowValidation()).toEqual({ noValidate: true });
    expect(workflowValidation({ definitionFile: 'custom.asl.json' })).toEqual({ checkArn: false });
  });

  it('loads the interpreter without the AWS SDK Lambda client or the validator, and still validates a definition file', () => {
    const script = `
      import { createRequire } from 'node:module';
      const { StateMachine } = await import('./local/runner/interpreter.ts');
      const loaded = () => Object.keys(createRequire(import.meta.url).cache).filter((f) => /client-lambda|asl-validator/.test(f)).length;
      const before = loaded();
      let rejected = false;
      try { new StateMachine({ StartAt: 'A', States: { A: { Type: 'Pass', Next: 'Missing' } } }, { validationOptions: { checkArn: false } }); } catch { rejected = true; }
      console.log(JSON.stringify({ before, rejected }));`;
    const child = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { cwd: repositoryRoot, encoding: 'utf8' });
    expect(JSON.parse(child.stdout.trim().split('\n').pop()!), child.stderr).toEqual({ before: 0, rejected: true });
  });

  it('does not use what the local interpreter cannot run', async () => {
    const text = readFileSync(workflowFile, 'utf8');
    expect(text).not.toMatch(/"ResultPath":\s*"\$"/);
    expect(text).not.toMatch(/JSONata|"Assign"|"DISTRIBUTED"/);
    // HeartbeatSeconds is for AWS (the callback tasks heartbeat); the runner strips it.
    expect(text).toMatch(/"HeartbeatSeconds"/);
    const { definition } = await loadLocalDefinition();
    expect(JSON.stringify(definition)).not.toMatch(/HeartbeatSeconds/);
  });
});

/**
 * Callback tasks whose workflow gave up on them (Step Functions answers TaskTimedOut): the real
 * task entrypoints, run as the container runs them, against a stand-in for the Step Functions
 * API (AWS_ENDPOINT_URL_SFN) and a real PostgreSQL.
 */
import { spawn } from 'node:child_process';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { beginMigration, ensureControlSchema } from '../../engine/control/index.js';
import { parseSpec, type MigrationSpec } from '../../engine/spec/index.js';
import { startClusters, type LocalCluster } from '../../local/dev/cluster.js';
import { scratchDir } from '../support/clusters.js';
import { waitFor } from '../support/wait.js';

const root = fileURLToPath(new URL('../..', import.meta.url));
const scratch = scratchDir('task-gone');
const EXECUTION = 'arn:aws:states:eu-west-1:123456789012:execution:pgferry:gone';
let cluster: LocalCluster;

/** What the stand-in answers to each Step Functions action: 'ok', or 'gone' (TaskTimedOut). */
type Answers = Partial<Record<'SendTaskHeartbeat' | 'SendTaskSuccess' | 'SendTaskFailure', 'ok' | 'gone'>>;
let answers: Answers = {};
const received: string[] = [];
/** While set, heartbeats get no answer until `answerHeldHeartbeats`. */
let holdHeartbeats = false;
const held: (() => void)[] = [];
function answerHeldHeartbeats(): void {
  holdHeartbeats = false;
  for (const answer of held.splice(0)) answer();
}
let server: Server;
let endpoint: string;

beforeAll(async () => {
  server = createServer((request, response) => {
    const action = String(request.headers['x-amz-target'] ?? '').replace(/^AWSStepFunctions\./, '') as keyof Answers;
    request.resume().on('end', () => {
      received.push(action);
      if (action === 'SendTaskHeartbeat' && holdHeartbeats) held.push(answer);
      else answer();
    });
    function answer() {
      response.setHeader('content-type', 'application/x-amz-json-1.0');
      if ((answers[action] ?? 'ok') === 'ok') {
        response.end('{}');
        return;
      }
      response.statusCode = 400;
      response.end(JSON.stringify({ __type: 'com.amazonaws.swf.service.v2.model#TaskTimedOut', message: "Task Timed Out: 'Provided task does not exist anymore'" }));
    }
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  endpoint = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  [cluster] = await startClusters([{ major: 17, label: 'task-gone' }]);
});

afterAll(async () => {
  await cluster?.stop();
  await new Promise((resolve) => server?.close(resolve));
  scratch.remove();
});

/** A migration registered on the target (as SchemaPreData does), whose source has one table. */
async function registeredMigration(name: string): Promise<MigrationSpec> {
  const db = name.replace(/-/g, '_');
  await cluster.sql(`CREATE DATABASE ${db}`);
  await cluster.sql(`CREATE DATABASE ${db}_target`);
  await cluster.sql('CREATE TABLE t (id int PRIMARY KEY); INSERT INTO t SELECT generate_series(1, 10)', db);
  const spec = parseSpec(
    {
      name,
      mode: 'full+cdc',
      source: { secret: scratch.secretFor(`${name}-source`, cluster), database: db },
      target: { secret: scratch.secretFor(`${name}-target`, cluster), database: `${db}_target` },
    }
  );
  const target = await cluster.connect(`${db}_target`);
  try {
    await ensureControlSchema(target);
    await beginMigration(target, name, spec, EXECUTION);
  } finally {
    await target.end();
  }
  return spec;
}

/** Runs a task entrypoint as the container does, with Step Functions at the stand-in. */
type TaskRun = Promise<{ code: number | null; stderr: string; stdout: string }> & { stdoutSoFar: () => string };

function runTask(task: 'replicate' | 'snapshot', spec: MigrationSpec): TaskRun {
  const env: NodeJS.ProcessEnv = {
    PATH: process.env.PATH,
    HOME: process.env.HOME,
    PGFERRY_MIGRATION: spec.name,
    PGFERRY_TARGET: JSON.stringify(spec.target),
    PGFERRY_TASK_TOKEN: 'token-of-a-task-that-timed-out',
    AWS_REGION: 'eu-west-1',
    AWS_ACCESS_KEY_ID: 'AKIDEXAMPLE',
    AWS_SECRET_ACCESS_KEY: 'secret',
    AWS_ENDPOINT_URL_SFN: endpoint,
    AWS_MAX_ATTEMPTS: '1',
    AWS_EC2_METADATA_DISABLED: 'true',
  };
  const child = spawn(process.execPath, ['--import', 'tsx', `tasks/${task}.ts`], { cwd: root, env, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
  const killer = setTimeout(() => child.kill('SIGKILL'), 60_000);
  const exited = new Promise<{ code: number | null; stderr: string; stdout: string }>((resolve) =>
    child.once('exit', (code) => {
      clearTimeout(killer);
      resolve({ code, stdout, stderr });
    }),
  );
  return Object.assign(exited, { stdoutSoFar: () => stdout });
}

/** The task logs this as it learns from a heartbeat's answer that the workflow gave up on it. */
const heartbeatRefused = (run: TaskRun) => run.stdoutSoFar().includes('heartbeat to the workflow failed (TaskTimedOut');

const lastLine = (text: string) => text.trim().split('\n').pop() ?? '';
const GONE = "the workflow no longer waits for this task (TaskTimedOut: Task Timed Out: 'Provided task does not exist anymore')";

async function replicationLeftovers(database: string) {
  const [slots, publications] = await cluster.sql(
    "SELECT slot_name FROM pg_replication_slots WHERE database = current_database(); SELECT pubname FROM pg_publication",
    database,
  );
  return { slots: slots!.rows.map((r) => r.slot_name), publications: publications!.rows.map((r) => r.pubname) };
}

describe('a callback task the workflow no longer waits for', () => {
  it('replicate drops the slot and publication it created when SendTaskSuccess answers TaskTimedOut, and exits 1', async () => {
    const spec = await registeredMigration('gone-success');
    answers = { SendTaskHeartbeat: 'ok', SendTaskSuccess: 'gone', SendTaskFailure: 'gone' };
    received.length = 0;

    const result = await runTask('replicate', spec);

    expect(result.code).toBe(1);
    expect(result.stdout).toContain('created slot pgferry_gone_success');
    expect(lastLine(result.stderr)).toBe(
      `replicate failed: ${GONE}; dropped the replication slot pgferry_gone_success and the publication pgferry_gone_success it had created`,
    );
    expect(await replicationLeftovers('gone_success')).toEqual({ slots: [], publications: [] });
    // Nothing told a workflow that is no longer there, and the migration's state got no error of this task.
    expect(received.filter((action) => action !== 'SendTaskHeartbeat')).toEqual(['SendTaskSuccess']);
    const [status] = await cluster.sql("SELECT last_error FROM pgferry.replication_status WHERE migration = 'gone-success'", 'gone_success_target');
    expect(status!.rows).toEqual([{ last_error: null }]);
  }, 90_000);

  it('replicate drops the slot it was creating when a heartbeat answers TaskTimedOut meanwhile', async () => {
    const spec = await registeredMigration('gone-heartbeat');
    answers = { SendTaskHeartbeat: 'gone', SendTaskSuccess: 'gone', SendTaskFailure: 'gone' };
    received.length = 0;
    holdHeartbeats = true;
    // A transaction with an id holds slot creation (it waits for running transactions), as a long one on a busy source does.
    const blocker = await cluster.connect('gone_heartbeat');
    await blocker.query('BEGIN');
    await blocker.query('SELECT txid_current()');
    const running = runTask('replicate', spec);
    try {
      await waitFor('the slot creation to wait for the open transaction', async () => {
        const [waiting] = await cluster.sql("SELECT 1 FROM pg_stat_activity WHERE application_name = 'pgferry-replicate' AND query LIKE 'CREATE_REPLICATION_SLOT%'");
        return waiting!.rows.length > 0;
      });
      // Step Functions gave up on the task while the slot waited: the workflow went on to Cleanup, which found no slot yet.
      answerHeldHeartbeats();
      await waitFor('the task to log the refused heartbeat', () => heartbeatRefused(running));
    } finally {
      answerHeldHeartbeats();
      await blocker.query('COMMIT');
      await blocker.end();
    }

    const result = await running;

    expect(result.code).toBe(1);
    expect(result.stdout).toContain('created slot pgferry_gone_heartbeat');
    expect(lastLine(result.stderr)).toBe(
      `replicate failed: ${GONE}; dropped the replication slot pgferry_gone_heartbeat and the publication pgferry_gone_heartbeat it had created`,
    );
    expect(await replicationLeftovers('gone_heartbeat')).toEqual({ slots: [], publications: [] });
    expect(received).not.toContain('SendTaskSuccess');
    expect(received).not.toContain('SendTaskFailure');
  }, 90_000);

  it('replicate creates nothing once a heartbeat has answered TaskTimedOut', async () => {
    const spec = await registeredMigration('gone-early');
    answers = { SendTaskHeartbeat: 'gone', SendTaskSuccess: 'gone', SendTaskFailure: 'gone' };
    received.length = 0;
    // The source answers slowly: listing the tables waits for a lock, long after the first heartbeat's answer.
    const locker = await cluster.connect('gone_early');
    await locker.query('BEGIN');
    await locker.query('LOCK TABLE pg_catalog.pg_class IN ACCESS EXCLUSIVE MODE');
    const running = runTask('replicate', spec);
    try {
      await waitFor('the task to log the refused heartbeat', () => heartbeatRefused(running));
    } finally {
      await locker.query('COMMIT');
      await locker.end();
    }

    const result = await running;

    expect(result.code).toBe(1);
    expect(lastLine(result.stderr)).toBe(`replicate failed: ${GONE}; not starting replication`);
    expect(await replicationLeftovers('gone_early')).toEqual({ slots: [], publications: [] });
    expect(received.filter((action) => action !== 'SendTaskHeartbeat')).toEqual([]);
  }, 90_000);

  it('snapshot releases its snapshot and exits 1 when SendTaskSuccess answers TaskTimedOut', async () => {
    const spec = await registeredMigration('gone-snapshot');
    answers = { SendTaskHeartbeat: 'ok', SendTaskSuccess: 'gone', SendTaskFailure: 'gone' };

    const result = await runTask('snapshot', spec);

    expect(result.code).toBe(1);
    expect(lastLine(result.stderr)).toMatch(new RegExp(`^snapshot failed: ${GONE.replace(/[()]/g, '\\$&')}; released snapshot [0-9A-F]+-[0-9A-F]+-[0-9]+$`));
    const [sessions] = await cluster.sql("SELECT count(*)::int AS n FROM pg_stat_activity WHERE application_name = 'pgferry-snapshot'");
    expect(sessions!.rows[0].n).toBe(0);
  }, 90_000);
});

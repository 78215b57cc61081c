/**
 * No time limit: the CDC and paused loops continue as a new execution once they have run
 * MAX_LOOP_TURNS turns, taking the run over as it is. Here the workflow runs with a limit of 3
 * turns and status calls that answer at once, so the chain is walked in seconds; the history a
 * turn costs is measured on the way and shows that, with the real limit, every execution stays
 * under the 25,000 events of a Standard execution, so a year of CDC is a chain of them.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { migrationState, readReplicationStatus, requestCutover } from '../../engine/control/index.js';
import { startClusters, type LocalCluster } from '../../local/dev/cluster.js';
import { runLocalWorkflow, type LocalRunResult, type WorkflowEvent } from '../../local/runner/index.js';
import { MAX_LOOP_TURNS, migrationDefinition } from '../../state-machines/definition.js';
import { scratchDir } from '../support/clusters.js';
import { databaseHashes } from '../support/equality.js';
import { waitFor as waitUntil } from '../support/wait.js';

let source: LocalCluster;
let target: LocalCluster;
const scratch = scratchDir('continue');
const TEST_TURNS = 3;

beforeAll(async () => {
  [source, target] = await startClusters([
    { major: 15, label: 'continue15' },
    { major: 17, label: 'continue17' },
  ]);
});

afterAll(async () => {
  await Promise.all([source, target].map((c) => c?.stop()));
  scratch.remove();
});

const waitFor = <T>(what: string, probe: () => Promise<T | undefined | false | null>) => waitUntil(what, probe, 110_000, 100);

/** The workflow with a turn limit of TEST_TURNS and status calls that do not wait. */
function shortLoopDefinition(): string {
  const text = JSON.stringify(migrationDefinition)
    .replaceAll(`"NumericGreaterThanEquals":${MAX_LOOP_TURNS}`, `"NumericGreaterThanEquals":${TEST_TURNS}`)
    .replaceAll('"waitUpToSeconds":840', '"waitUpToSeconds":0');
  const file = join(scratch.dir, 'short-loops.asl.json');
  writeFileSync(file, text);
  return file;
}

/** History events a state costs on AWS: a Task is entered, scheduled, started, succeeds and is exited; any other state is entered and exited. */
const historyEvents = (stateName: string) => ((migrationDefinition.States as Record<string, { Type: string }>)[stateName]?.Type === 'Task' ? 5 : 2);

describe('continue as new', () => {
  it('continues the CDC loop as new executions that take the run over, ends identical, and a turn costs little enough for a year', async () => {
    const database = 'chain';
    const name = 'continue-chain';
    await source.sql(`CREATE DATABASE ${database}`);
    await source.sql('CREATE TABLE t (id int PRIMARY KEY, v text); INSERT INTO t SELECT g, md5(g::text) FROM generate_series(1, 2000) g', database);
    await target.sql(`CREATE DATABASE ${database}`);
    const spec = {
      name,
      mode: 'full+cdc',
      source: { secret: scratch.secretFor(`${name}-source`, source), database },
      target: { secret: scratch.secretFor(`${name}-target`, target), database },
      cdc: { heartbeatTimeoutSeconds: 2 },
      compare: { enabled: false },
    };
    const executions = new Set<string>();
    const perTurn: number[] = [];
    let turn = 0;
    let beforeLoop = 0;
    let inLoop = false;
    const onEvent = (event: WorkflowEvent) => {
      if (event.type !== 'StateEntered') return;
      const state = event.state.name;
      if (state === 'CountTurn') {
        if (inLoop) perTurn.push(turn);
        inLoop = true;
        turn = 0;
      }
      if (inLoop) turn += historyEvents(state);
      else beforeLoop += historyEvents(state);
      if (state === 'SchemaPreData') executions.add(`${executions.size}`);
      if (state === 'ContinueAsNew') inLoop = false;
    };
    let result: LocalRunResult | undefined;
    const run = runLocalWorkflow(spec, { definitionFile: shortLoopDefinition(), onEvent }).then((r) => (result = r));
    const control = await target.connect(database);
    try {
      await waitFor('two continuations', async () => executions.size >= 3 && (await readReplicationStatus(control, name))?.streamingSince);
      await source.sql("INSERT INTO t SELECT g, 'late ' || g FROM generate_series(3001, 3500) g; UPDATE t SET v = 'changed' WHERE id % 10 = 0", database);
      const state = await migrationState(control, name);
      expect(state?.phase).toBe('replicate');
      await requestCutover(control, name);
      await run;
    } finally {
      await control.end();
    }
    expect(result, JSON.stringify(result)).toMatchObject({ status: 'SUCCEEDED' });
    expect(executions.size).toBeGreaterThanOrEqual(3);
    expect(await databaseHashes(target, database)).toEqual(await databaseHashes(source, database));
    const [slots] = await source.sql("SELECT count(*)::int AS n FROM pg_replication_slots WHERE slot_name = 'pgferry_continue_chain'");
    expect(slots!.rows[0].n).toBe(0);

    // The history one execution can reach with the real limit: what it costs before its loop (a
    // first execution with its load, counted once for all), plus MAX_LOOP_TURNS of the costliest turn seen.
    const costliestTurn = Math.max(...perTurn);
    expect(perTurn.length).toBeGreaterThanOrEqual(TEST_TURNS);
    expect(beforeLoop + MAX_LOOP_TURNS * costliestTurn).toBeLessThan(25_000);
    // A waiting turn spans up to 14 minutes, so one execution holds days of CDC: a year is a chain of a few dozen.
    const executionsPerYear = Math.ceil((365 * 24 * 60) / (MAX_LOOP_TURNS * 14));
    expect(executionsPerYear).toBeLessThan(60);
  });
});

/** The drill's DDL fault and its replicate-task kills (faults.ts has the others). */
import { messageOf, sleep } from '../../../engine/sql.js';
import type { DrillContext } from './context.js';
import { underLoad } from './faults.js';
import { waitFor } from './observe.js';
import { replicateTasks, signalProcesses } from './processes.js';
import { DRILL_DATABASE } from './setup.js';
import { settle, type Settled } from './settle.js';

const DDL_STATEMENTS = [
  'ALTER TABLE public.workload_docs ADD COLUMN drill_note text',
  "UPDATE public.workload_docs SET drill_note = 'noted ' || id WHERE id % 3 = 0",
  'ALTER TABLE public.pgbench_tellers ALTER COLUMN tbalance TYPE bigint',
  'CREATE TABLE public.drill_created (id bigint PRIMARY KEY, note text NOT NULL, at timestamptz NOT NULL DEFAULT clock_timestamp())',
  "INSERT INTO public.drill_created (id, note) SELECT g, 'created ' || g FROM generate_series(1, 2000) g",
];

/** What the target lacks of the DDL once replicated: empty when it has all of it. */
async function missingDdl(context: DrillContext): Promise<string[]> {
  const [result] = await context.target.sql(
    `SELECT (SELECT count(*) FROM information_schema.columns WHERE table_name = 'workload_docs' AND column_name = 'drill_note')::int AS note,
            (SELECT data_type FROM information_schema.columns WHERE table_name = 'pgbench_tellers' AND column_name = 'tbalance') AS tbalance,
            (SELECT count(*) FROM pg_tables WHERE tablename = 'drill_created')::int AS created`,
    DRILL_DATABASE,
  );
  const row = result!.rows[0] as { note: number; tbalance: string; created: number };
  return [
    ...(row.note === 1 ? [] : ['the ADD COLUMN']),
    ...(row.tbalance === 'bigint' ? [] : [`the ALTER TYPE (tbalance is ${row.tbalance})`]),
    ...(row.created === 1 ? [] : ['the CREATE TABLE']),
  ];
}

/** 3. ADD COLUMN, ALTER TYPE (int → bigint) and CREATE TABLE with rows on the source, under load. */
export async function schemaChanges(context: DrillContext): Promise<Settled> {
  const fault = 'ADD COLUMN, ALTER TYPE, CREATE TABLE';
  context.say(`${fault} on the source, under load…`);
  try {
    for (const statement of DDL_STATEMENTS) await underLoad(context, statement);
    await sleep(3_000, context.signal);
    await underLoad(context, "INSERT INTO public.drill_created (id, note) SELECT g, 'later ' || g FROM generate_series(2001, 2500) g");
  } catch (error) {
    return { result: { fault, recovered: false, notes: [`the source refused: ${messageOf(error)}`] }, goOn: false };
  }
  const settled = await settle(context, fault, []);
  const missing = await missingDdl(context).catch((error) => [`(the target could not be read: ${messageOf(error)})`]);
  if (missing.length > 0) {
    settled.result.recovered = false;
    settled.result.notes.push(`the target lacks ${missing.join(', ')}`);
  } else {
    settled.result.notes.push('all three on the target');
    await context.rewrote('public.pgbench_tellers');
  }
  return settled;
}

/** A replicate task of the drill other than `killed`, once one runs. */
const nextReplicateTask = (context: DrillContext, killed: number[]) =>
  waitFor(context, context.options.recoveryTimeoutSeconds, async () => replicateTasks(context.drillId).find((p) => !killed.includes(p.pid))?.pid);

/** 4. The replicate task process is SIGKILLed 5 times, each time a few seconds after its replacement started. */
export async function replicateKills(context: DrillContext): Promise<Settled> {
  const fault = '5 SIGKILLs of the replicate task';
  const killed: number[] = [];
  const restarts: number[] = [];
  for (let kill = 1; kill <= 5; kill++) {
    const started = Date.now();
    const pid = await nextReplicateTask(context, killed);
    if (pid === undefined) {
      const notes = [`killed ${killed.join(', ') || 'none'}; no replicate task ran after kill ${kill - 1} within ${context.options.recoveryTimeoutSeconds} s`];
      return settle(context, fault, notes).then((settled) => ({ ...settled, result: { ...settled.result, recovered: false } }));
    }
    if (kill > 1) restarts.push(Math.round((Date.now() - started) / 1000));
    await sleep(3_000 + Math.random() * 9_000, context.signal);
    context.say(`${fault}: kill ${kill}: kill -KILL ${pid}`);
    signalProcesses([pid], 'SIGKILL');
    killed.push(pid);
  }
  return settle(context, fault, [`killed ${killed.join(', ')}; replacements ran after ${restarts.join(', ')} s`]);
}

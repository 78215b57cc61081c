/**
 * `npm run bench:throttle [-- --rows 200000 --max-rows 20000 --parallelism 2]`: a full load held
 * to `fullLoad.maxRowsPerSecond` (issue 15, item 3). Copies a generated table with that many
 * copy workers, each applying its share of the limit among the workers running (engine/flow/),
 * and prints the rows per second achieved against the limit and their ratio; the goal is within
 * 10% of it. With `--max-bytes SIZE` it holds the bytes instead, and prints those. The figure
 * covers the workers' whole run: connecting, every unit and its commit.
 * With `--cdc`, the CDC applier instead, held to `cdc.maxRowsPerSecond`: `--rows` rows inserted
 * on the source in transactions of 100, timed from the first to the last visible on the target.
 * Not part of `npm test`.
 */
import { parseArgs } from 'node:util';
import { listTables } from '../engine/catalog/tables.js';
import { beginMigration, ensureControlSchema } from '../engine/control/index.js';
import { planUnits, savePlan, targetFacts, targetOf } from '../engine/load/planner.js';
import { runCopyWorker } from '../engine/load/worker.js';
import { exportSnapshot } from '../engine/snapshot.js';
import { parseSize, parseSpec } from '../engine/spec/index.js';
import { formatBytes } from '../engine/bytes.js';
import { startClusters, stopAllClusters, type LocalCluster } from '../local/dev/cluster.js';
import pg from 'pg';
import { runReplicator } from '../engine/cdc/replicator.js';
import { createSlotWithSnapshot, ensurePublication } from '../engine/cdc/slot.js';
import { CANONICAL_STARTUP_OPTIONS } from '../engine/connect/index.js';
import { registerReplication } from '../engine/control/index.js';

const { values } = parseArgs({
  options: {
    rows: { type: 'string', default: '200000' },
    'max-rows': { type: 'string', default: '20000' },
    'max-bytes': { type: 'string' },
    parallelism: { type: 'string', default: '2' },
    cdc: { type: 'boolean', default: false },
  },
});
const rows = Number(values.rows);
const parallelism = Number(values.parallelism);
const maxRows = values['max-bytes'] ? undefined : Number(values['max-rows']);
const maxBytes = values['max-bytes'] ? parseSize(values['max-bytes']) : undefined;
if (!Number.isInteger(rows) || rows < 1) throw new Error(`--rows must be a whole number of at least 1, not "${values.rows}"`);
if (maxRows !== undefined && (!Number.isInteger(maxRows) || maxRows < 1)) throw new Error(`--max-rows must be a whole number of at least 1, not "${values['max-rows']}"`);
if (values['max-bytes'] && maxBytes === undefined) throw new Error(`--max-bytes must be a size like "2MB", not "${values['max-bytes']}"`);

const DDL = 'CREATE TABLE items (id bigint PRIMARY KEY, name text NOT NULL, price numeric, at timestamptz)';

function printRate(what: string, achieved: number, limit: number, seconds: number, unit: (n: number) => string): void {
  console.log(`  limit     ${unit(limit)}/s (${what})`);
  console.log(`  achieved  ${unit(achieved)}/s over ${seconds.toFixed(2)} s`);
  console.log(`  ratio     ${(achieved / limit).toFixed(3)} of the limit (goal: 0.90–1.10)`);
}
const rowsUnit = (n: number) => `${Math.round(n).toLocaleString('en-US')} rows`;

function configOf(cluster: LocalCluster, database: string): pg.ClientConfig {
  const { username, dbname: _own, ...rest } = cluster.connection;
  return { ...rest, user: username, database };
}

/** The CDC applier held to cdc.maxRowsPerSecond: rows inserted at once on the source, timed as they become visible on the target. */
async function benchCdc(source: LocalCluster, target: LocalCluster, limit: number): Promise<void> {
  const migration = 'throttle-cdc';
  const [src, tgt] = [await source.connect('bench'), await target.connect('bench')];
  await ensureControlSchema(tgt);
  await beginMigration(tgt, migration, { mode: 'cdc' });
  await ensurePublication(src, { name: 'throttle_cdc', tables: [{ schema: 'public', name: 'items' }] });
  const holder = await createSlotWithSnapshot(async () => {
    const client = new pg.Client({ ...configOf(source, 'bench'), replication: 'database' } as pg.ClientConfig);
    await client.connect();
    return client;
  }, 'throttle_cdc');
  await holder.release();
  await registerReplication(tgt, migration, { slotName: 'throttle_cdc', publicationName: 'throttle_cdc', consistentLsn: holder.slot.consistentLsn });
  const abort = new AbortController();
  const run = runReplicator({
    migration,
    slotName: 'throttle_cdc',
    publicationName: 'throttle_cdc',
    conflictPolicy: 'error',
    batch: { maxRows: 50000, maxBytes: 64 << 20, maxDelayMs: 200 },
    retryWindowMs: 60_000,
    connectSource: () => source.connect('bench'),
    connectTarget: () => target.connect('bench'),
    streamConfig: async () => ({ ...configOf(source, 'bench'), replication: 'database', options: CANONICAL_STARTUP_OPTIONS }) as pg.ClientConfig,
    log: () => undefined,
    signal: abort.signal,
    flow: { rowsPerSecond: limit },
  });
  const count = async () => (await tgt.query<{ n: number }>('SELECT count(*)::int AS n FROM items')).rows[0]!.n;
  // Transactions of 100 rows: a transaction becomes visible on the target whole, at its commit.
  await src.query(
    `DO $$ BEGIN FOR t IN 0..${Math.ceil(rows / 100) - 1} LOOP
       INSERT INTO items SELECT g, 'item ' || g, g / 7.0, now() FROM generate_series(t * 100 + 1, least((t + 1) * 100, ${rows})) g;
       COMMIT;
     END LOOP; END $$`,
  );
  let first: { at: bigint; n: number } | undefined;
  for (;;) {
    const n = await count();
    if (n > 0 && !first) first = { at: process.hrtime.bigint(), n };
    if (n >= rows) break;
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  const seconds = Number(process.hrtime.bigint() - first!.at) / 1e9;
  abort.abort();
  await run;
  await src.query("SELECT pg_drop_replication_slot('throttle_cdc')");
  await Promise.all([src.end(), tgt.end()]);
  console.log(`throttled CDC apply: ${rows.toLocaleString('en-US')} rows inserted on the source in transactions of 100`);
  printRate('cdc.maxRowsPerSecond', (rows - first!.n) / seconds, limit, seconds, rowsUnit);
}

async function main(): Promise<void> {
  const [source, target] = await startClusters([{ major: 17, label: 'throttle-source' }, { major: 17, label: 'throttle-target' }]);
  await source.sql('CREATE DATABASE bench');
  await source.sql(DDL, 'bench');
  // For CDC the rows are inserted once the stream runs.
  if (!values.cdc) {
    await source.sql(`INSERT INTO items SELECT g, 'item ' || g, g / 7.0, timestamptz '2025-01-01' + g * interval '1 s' FROM generate_series(1, ${rows}) g`, 'bench');
    await source.sql('VACUUM ANALYZE items', 'bench');
  }
  await target.sql('CREATE DATABASE bench');
  await target.sql(values.cdc ? DDL : DDL.replace(' PRIMARY KEY', ''), 'bench');
  if (values.cdc) return benchCdc(source, target, maxRows ?? 5000);
  const spec = parseSpec({
    name: 'throttle-bench',
    source: { secret: 'env:UNUSED_SOURCE' },
    target: { secret: 'env:UNUSED_TARGET' },
    // Units of about 1 MB: a worker moves on to the next one many times during the run.
    fullLoad: { parallelism, splitTablesLargerThan: '1MB', ...(maxRows ? { maxRowsPerSecond: maxRows } : {}), ...(maxBytes ? { maxBytesPerSecond: maxBytes } : {}) },
  });
  const [src, tgt] = [await source.connect('bench'), await target.connect('bench')];
  await ensureControlSchema(tgt);
  await beginMigration(tgt, spec.name, spec);
  const tables = await listTables(src, spec.objects);
  const units = planUnits({ tables, target: await targetFacts(tgt, tables.map(targetOf)), spec, sourceVersionNum: 170000 });
  await savePlan(tgt, spec.name, tables, units);
  const snapshot = await exportSnapshot(src);

  const started = process.hrtime.bigint();
  const summaries = await Promise.all(
    Array.from({ length: parallelism }, () =>
      runCopyWorker({
        migration: spec.name,
        snapshot,
        maxAttempts: 1,
        flow: { rowsPerSecond: spec.fullLoad.maxRowsPerSecond, bytesPerSecond: spec.fullLoad.maxBytesPerSecond },
        connectSource: () => source.connect('bench'),
        connectTarget: () => target.connect('bench'),
      }),
    ),
  );
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  await src.query('COMMIT');
  const copied = summaries.reduce((sum, s) => sum + s.rows, 0);
  const bytes = summaries.reduce((sum, s) => sum + s.bytes, 0);
  const { rows: shares } = await tgt.query<{ workers: number }>('SELECT max(workers)::int AS workers FROM pgferry.flow_workers WHERE migration = $1', [spec.name]);
  await Promise.all([src.end(), tgt.end()]);
  if (copied !== rows) throw new Error(`copied ${copied} rows of ${rows}`);

  console.log(`throttled full load: ${rows.toLocaleString('en-US')} rows (${formatBytes(bytes)}) in ${units.length} units, ${parallelism} copy workers (at most ${shares[0]?.workers ?? '?'} seen running at once)`);
  if (maxRows) printRate('fullLoad.maxRowsPerSecond', copied / seconds, maxRows, seconds, rowsUnit);
  else printRate('fullLoad.maxBytesPerSecond', bytes / seconds, maxBytes!, seconds, (n) => formatBytes(Math.round(n)));
}

try {
  await main();
} finally {
  await stopAllClusters();
}

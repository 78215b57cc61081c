/**
 * `npm run bench:full-load [-- --size-mb 750 --parallelism 2]`: on one generated dataset
 * (pgbench-like tables plus a jsonb/text table), in the same run, measures
 *   1. a raw parallel `COPY … TO STDOUT | COPY … FROM STDIN` pipe (tables pre-created, no indexes),
 *   2. pgferry's whole run through the workflow, and its data phase,
 *   3. `pgcopydb clone` when it is installed,
 * and prints wall times, MB/s and the ratios. pgferry and pgcopydb take turns `--runs` times
 * (default 3): on a shared 2-core machine one run of either can be off by a tenth, and the
 * machine's speed drifts between runs, so the clone ratio is the median of each pair's ratio
 * (a pgferry run and the pgcopydb run right after it). Not part of `npm test`.
 */
import { spawn, spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { parseArgs } from 'node:util';
import { from as copyFrom, to as copyTo } from 'pg-copy-streams';
import { buildReport } from '../engine/report.js';
import { startClusters, stopAllClusters, type LocalCluster } from '../local/dev/cluster.js';
import type { runLocalWorkflow } from '../local/runner/index.js';
import { secretFile } from './support.js';

const { values } = parseArgs({
  options: {
    'size-mb': { type: 'string', default: '750' },
    parallelism: { type: 'string', default: '2' },
    runs: { type: 'string', default: '3' },
    'split-larger-than': { type: 'string' },
    verbose: { type: 'boolean', default: false },
  },
});
const sizeMb = Number(values['size-mb']);
const parallelism = Number(values.parallelism);
const runs = Number(values.runs);
if (!Number.isInteger(runs) || runs < 1) throw new Error(`--runs must be a whole number of at least 1, not "${values.runs}"`);
const MB = 1024 * 1024;

const SCHEMA = `
CREATE TABLE pgbench_branches (bid int NOT NULL, bbalance int, filler char(88));
CREATE TABLE pgbench_tellers (tid int NOT NULL, bid int, tbalance int, filler char(84));
CREATE TABLE pgbench_accounts (aid int NOT NULL, bid int, abalance int, filler char(84));
CREATE TABLE pgbench_history (tid int, bid int, aid int, delta int, mtime timestamp, filler char(22));
CREATE TABLE documents (id bigint NOT NULL, doc jsonb NOT NULL, body text NOT NULL, created_at timestamptz NOT NULL);`;
const KEYS = `
ALTER TABLE pgbench_branches ADD PRIMARY KEY (bid);
ALTER TABLE pgbench_tellers ADD PRIMARY KEY (tid);
ALTER TABLE pgbench_accounts ADD PRIMARY KEY (aid);
ALTER TABLE documents ADD PRIMARY KEY (id);
CREATE INDEX documents_created_idx ON documents (created_at);`;
const TABLES = ['pgbench_accounts', 'documents', 'pgbench_tellers', 'pgbench_branches', 'pgbench_history'];

async function generate(source: LocalCluster): Promise<number> {
  const accounts = Math.round((sizeMb * 0.8 * MB) / 121);
  const documents = Math.round((sizeMb * 0.2 * MB) / 1400);
  const scale = Math.max(1, Math.round(accounts / 100_000));
  await source.sql('CREATE DATABASE bench');
  await source.sql(
    `${SCHEMA}
     INSERT INTO pgbench_branches SELECT b, 0, '' FROM generate_series(1, ${scale}) b;
     INSERT INTO pgbench_tellers SELECT t, (t - 1) / 10 + 1, 0, '' FROM generate_series(1, ${scale * 10}) t;
     INSERT INTO pgbench_accounts SELECT a, (a - 1) / 100000 + 1, 0, '' FROM generate_series(1, ${accounts}) a;
     INSERT INTO documents SELECT g,
            jsonb_build_object('id', g, 'tags', jsonb_build_array('a' || g % 10, 'b' || g % 7), 'price', g / 100.0, 'text', repeat(md5(g::text), 8)),
            repeat(md5((g * 7)::text), 16), timestamptz '2025-01-01' + g * interval '1 second'
       FROM generate_series(1, ${documents}) g;
     ${KEYS}`,
    'bench',
  );
  await source.sql('VACUUM ANALYZE', 'bench');
  const [size] = await source.sql(`SELECT sum(pg_relation_size(oid))::float8 AS bytes FROM pg_class WHERE relname = ANY($$${'{' + TABLES.join(',') + '}'}$$::text[])`, 'bench');
  return size!.rows[0].bytes;
}

async function rawPipe(source: LocalCluster, target: LocalCluster): Promise<{ seconds: number; bytes: number }> {
  await target.sql('CREATE DATABASE raw_pipe');
  await target.sql(SCHEMA, 'raw_pipe');
  const queue = [...TABLES];
  let bytes = 0;
  const started = performance.now();
  await Promise.all(
    Array.from({ length: parallelism }, async () => {
      const [from, to] = [await source.connect('bench'), await target.connect('raw_pipe')];
      try {
        for (let table = queue.shift(); table; table = queue.shift()) {
          const reader = from.query(copyTo(`COPY ${table} TO STDOUT`));
          reader.on('data', (chunk: Buffer) => (bytes += chunk.length));
          await pipeline(reader, to.query(copyFrom(`COPY ${table} FROM STDIN`)));
        }
      } finally {
        await Promise.all([from.end(), to.end()]);
      }
    }),
  );
  return { seconds: (performance.now() - started) / 1000, bytes };
}

async function pgferry(source: LocalCluster, target: LocalCluster, dir: string, printTables: boolean) {
  await target.sql('CREATE DATABASE pgferry_run');
  const spec = {
    name: 'bench',
    mode: 'full',
    source: { secret: secretFile(dir, 'source', source, 'bench') },
    target: { secret: secretFile(dir, 'target', target, 'pgferry_run') },
    fullLoad: { parallelism, ...(values['split-larger-than'] ? { splitTablesLargerThan: values['split-larger-than'] } : {}) },
  };
  // Not spawnSync: this process must go on reading the servers' output while the run goes on.
  const child = spawn(process.execPath, [...process.execArgv, join(import.meta.dirname, 'run-once.ts'), JSON.stringify(spec)], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  let stdout = '';
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
  const [code] = (await once(child, 'close')) as [number | null];
  if (code !== 0) throw new Error(`the pgferry run's process exited with ${code}:\n${stdout}`);
  const lines = stdout.trim().split('\n');
  const { result, seconds, phases: states, processStartSeconds } = JSON.parse(lines[lines.length - 1]!) as {
    result: Awaited<ReturnType<typeof runLocalWorkflow>>;
    seconds: number;
    phases: [string, number][];
    processStartSeconds: number;
  };
  const phases = new Map(states);
  if (result.status !== 'SUCCEEDED') throw new Error(`pgferry run failed: ${result.error} ${result.cause}`);
  const client = await target.connect('pgferry_run');
  const report = await buildReport(client, 'bench');
  await client.end();
  for (const t of printTables ? report!.tables : []) {
    console.log(`    ${t.table.padEnd(20)} ${String(t.units).padStart(2)} unit(s)  ${(t.bytes / MB).toFixed(0).padStart(4)} MB  ${t.seconds.toFixed(2).padStart(6)} s  ${t.mbPerSecond.toFixed(1).padStart(6)} MB/s`);
  }
  return { seconds, processStartSeconds, dataSeconds: report!.totals.loadSeconds, bytes: report!.totals.bytes, units: report!.tables.reduce((n, t) => n + t.units, 0), phases };
}

async function pgcopydb(source: LocalCluster, target: LocalCluster, dir: string): Promise<number | undefined> {
  if (spawnSync('pgcopydb', ['--version']).status !== 0) return undefined;
  // pgcopydb refuses a work directory a completed run left behind.
  rmSync(join(dir, 'pgcopydb'), { recursive: true, force: true });
  const started = performance.now();
  // Not execFileSync: this process must go on reading the servers' output meanwhile.
  const child = spawn(
    'pgcopydb',
    ['clone', '--source', source.uri('bench'), '--target', target.uri('pgcopydb_run'), '--table-jobs', String(parallelism),
     '--index-jobs', String(parallelism), '--dir', join(dir, 'pgcopydb'), '--no-owner', '--no-acl'],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let output = '';
  for (const stream of [child.stdout, child.stderr]) stream.setEncoding('utf8').on('data', (chunk: string) => (output += chunk));
  const [code] = (await once(child, 'close')) as [number | null];
  const seconds = (performance.now() - started) / 1000;
  if (code !== 0) throw new Error(`pgcopydb clone exited with ${code}:\n${output}`);
  if (values.verbose) console.log(output);
  return seconds;
}

const median = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]!;
const fmt = (seconds: number) => `${seconds.toFixed(2)} s`;
const rate = (bytes: number, seconds: number) => `${(bytes / MB / seconds).toFixed(1)} MB/s`;

async function main() {
  const dir = mkdtempSync(join(tmpdir(), 'pgferry-bench-'));
  const settings = { shared_buffers: '1GB', max_wal_size: '4GB', checkpoint_timeout: '30min', maintenance_work_mem: '512MB' };
  try {
    console.log(`Starting PostgreSQL 15 (source) and 17 (target); dataset ~${sizeMb} MB; parallelism ${parallelism}.`);
    const [source, target] = await startClusters([
      { major: 15, label: 'bench-source', settings },
      { major: 17, label: 'bench-target', settings },
    ]);
    const tableBytes = await generate(source);
    console.log(`Dataset: ${(tableBytes / MB).toFixed(0)} MB in ${TABLES.length} tables.\n`);

    // Every measured run starts from the same state: no dirty buffers from the run before.
    const settle = async (dropOnTarget?: string) => {
      if (dropOnTarget) await target.sql(`DROP DATABASE ${dropOnTarget}`);
      await Promise.all([source.sql('CHECKPOINT'), target.sql('CHECKPOINT')]);
    };
    await settle();
    const raw = await rawPipe(source, target);
    console.log(`raw COPY pipe        ${fmt(raw.seconds)}  ${rate(raw.bytes, raw.seconds)}  (${(raw.bytes / MB).toFixed(0)} MB of COPY text)`);

    await settle('raw_pipe');
    const clones: number[] = [];
    const copydbs: number[] = [];
    const dataPhases: number[] = [];
    const wholeRuns: number[] = [];
    const clonesWithStart: number[] = [];
    for (let i = 1; i <= runs; i++) {
      const run = await pgferry(source, target, dir, i === 1);
      const cloneSeconds = run.seconds - (run.phases.get('Compare') ?? 0);
      clones.push(cloneSeconds);
      dataPhases.push(run.dataSeconds);
      wholeRuns.push(run.seconds);
      clonesWithStart.push(cloneSeconds + run.processStartSeconds);
      console.log(`pgferry data phase   ${fmt(run.dataSeconds)}  ${rate(run.bytes, run.dataSeconds)}  (${(run.bytes / MB).toFixed(0)} MB of COPY data, ${run.units} units)`);
      console.log(`pgferry whole run    ${fmt(run.seconds)}  (${[...run.phases].filter(([, s]) => s >= 0.05).map(([n, s]) => `${n} ${s.toFixed(2)}`).join(', ')})`);
      console.log(`pgferry clone        ${fmt(cloneSeconds)}  (the whole run without its Compare step, like pgcopydb clone; the process took ${fmt(run.processStartSeconds)} to start it)`);
      await settle('pgferry_run');

      await target.sql('CREATE DATABASE pgcopydb_run');
      const copydb = await pgcopydb(source, target, dir);
      await settle('pgcopydb_run');
      if (copydb === undefined) {
        console.log('pgcopydb             not installed (apt-get install pgcopydb to compare)');
        continue;
      }
      copydbs.push(copydb);
      console.log(`pgcopydb clone       ${fmt(copydb)}${runs > 1 ? `   (run ${i} of ${runs}: pgferry/pgcopydb ${(cloneSeconds / copydb).toFixed(2)}×)` : ''}\n`);
    }

    const clone = median(clones);
    const dataPhase = median(dataPhases);
    console.log(`\nRatios (lower is better for pgferry${runs > 1 ? `; medians of ${runs} runs` : ''}):`);
    console.log(`  pgferry data phase / raw pipe : ${(dataPhase / raw.seconds).toFixed(2)}×  (bar: ≤ 1.10×)`);
    if (copydbs.length > 0) {
      const paired = (seconds: number[]) => median(seconds.map((s, i) => s / copydbs[i]!)).toFixed(2);
      const pairs = clones.map((s, i) => `${(s / copydbs[i]!).toFixed(2)}`).join(', ');
      console.log(`  pgferry clone / pgcopydb clone: ${paired(clones)}×  (bar: ≤ 1.00×; runs: ${pairs}; medians pgferry ${fmt(clone)}, pgcopydb ${fmt(median(copydbs))})`);
      console.log(`  the same, counting pgferry's process start: ${paired(clonesWithStart)}×  (Node, tsx and the CLI's imports; pgcopydb's start is in its time)`);
      console.log(`  pgferry whole run incl. compare / pgcopydb clone: ${paired(wholeRuns)}×  (pgcopydb verifies nothing)`);
    }
  } finally {
    await stopAllClusters();
    rmSync(dir, { recursive: true, force: true });
  }
}

await main();

/**
 * The comparison while changes flow (issue 14) under a steady write load, PG 13 → PG 18: each
 * table is read in a consistent pair of snapshots, so a hot table is verified in one pass (rows
 * changed in between are left for the next comparison), a lasting difference is still named by
 * key among the changes in flight, and the passes at the cutover request leave the comparison
 * behind the fence only the last few changes.
 */
import type pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseLsn } from '../../engine/cdc/pgoutput.js';
import type { ReplicatorEnd } from '../../engine/cdc/replicator.js';
import {
  loadComparisons,
  readReplicationStatus,
  requestCutover,
  setDrainLsn,
  type TableComparison,
} from '../../engine/control/index.js';
import { parseSpec } from '../../engine/spec/index.js';
import { compareStep } from '../../engine/steps/compare.js';
import { startClusters, type LocalCluster } from '../../local/dev/cluster.js';
import { startTrackedReplicator, type TrackedReplicator } from '../support/tracked-replicator.js';

const DATABASE = 'busy';
const MIGRATION = 'busy-compare';
const SLOT = 'pgferry_busy_compare';
/** The writer touches ids up to this; rows above it hold still. */
const HOT_IDS = 4000;

const TABLES = `
  CREATE TABLE public.hot (id int PRIMARY KEY, v bigint NOT NULL, note text);
  CREATE TABLE public.hot_pairs (a int, b text, n int, PRIMARY KEY (a, b));
  CREATE TABLE public.log (at int, what text);
  ALTER TABLE public.log REPLICA IDENTITY FULL;`;
const ROWS = `
  INSERT INTO public.hot SELECT g, g, repeat('x', g % 50) FROM generate_series(1, 8000) g;
  INSERT INTO public.hot_pairs SELECT g % 100, 'k' || g, 0 FROM generate_series(1, 3000) g;
  INSERT INTO public.log SELECT g, 'loaded' FROM generate_series(1, 500) g;`;

let source: LocalCluster;
let target: LocalCluster;
let control: pg.Client;
let src: pg.Client;
let replicator: TrackedReplicator;
let run: Promise<ReplicatorEnd | Error>;

const spec = parseSpec(
  {
    name: MIGRATION,
    mode: 'cdc',
    source: { secret: 'env:SOURCE_DB' },
    target: { secret: 'env:TARGET_DB' },
    objects: { include: [{ schema: 'public', tables: ['*'] }] },
    compare: { chunkRows: 1000 },
  }
);
const logs: string[] = [];
const context = () => ({
  migration: MIGRATION,
  spec,
  connectSource: () => source.connect(DATABASE),
  connectTarget: () => target.connect(DATABASE),
  log: (line: string) => logs.push(line),
});

/** Writes on the source until stopped: updates, inserts and deletes of hot rows, moves in hot_pairs, and a line appended to the keyless log. */
function startWriter(): { stop: () => Promise<number> } {
  let running = true;
  let transactions = 0;
  const done = (async () => {
    const client = await source.connect(DATABASE);
    try {
      for (let i = 0; running; i++) {
        const id = 1 + ((i * 7919) % HOT_IDS);
        await client.query('BEGIN');
        await client.query('UPDATE hot SET v = v + 1, note = md5(v::text) WHERE id = $1', [id]);
        if (i % 5 === 0) await client.query('DELETE FROM hot WHERE id = $1', [1 + ((i * 31) % HOT_IDS)]);
        if (i % 5 === 1) await client.query('INSERT INTO hot VALUES ($1, 0, NULL) ON CONFLICT (id) DO NOTHING', [1 + ((i * 31) % HOT_IDS)]);
        await client.query("UPDATE hot_pairs SET n = n + 1, b = b || '+' WHERE a = $1 AND b = (SELECT min(b) FROM hot_pairs WHERE a = $1)", [i % 100]);
        await client.query("INSERT INTO log VALUES ($1, 'written')", [i]);
        await client.query('COMMIT');
        transactions++;
      }
    } finally {
      await client.end();
    }
  })();
  return {
    stop: async () => {
      running = false;
      await done;
      return transactions;
    },
  };
}

async function comparisons(): Promise<Map<string, TableComparison>> {
  return new Map((await loadComparisons(control, MIGRATION)).map((c) => [c.source.name, c]));
}

async function verified(): Promise<Record<string, boolean>> {
  const { rows } = await control.query<{ source_table: string; matched: boolean }>(
    'SELECT source_table, matched FROM pgferry.verified_tables WHERE migration = $1',
    [MIGRATION],
  );
  return Object.fromEntries(rows.map((r) => [r.source_table, r.matched]));
}

/** On the target, a write the stream did not make (as if the applier had written a wrong byte). */
const corruptTarget = (sql: string) => target.sql(`SET session_replication_role = replica; ${sql}`, DATABASE);

beforeAll(async () => {
  [source, target] = await startClusters([
    { major: 13, label: 'busy-source' },
    { major: 18, label: 'busy-target' },
  ]);
  await source.sql(`CREATE DATABASE ${DATABASE}`);
  await target.sql(`CREATE DATABASE ${DATABASE}`);
  await source.sql(TABLES + ROWS, DATABASE);
  await target.sql(TABLES + ROWS, DATABASE);
  replicator = await startTrackedReplicator({ source, target, database: DATABASE, migration: MIGRATION, slot: SLOT, tables: ['hot', 'hot_pairs', 'log'], maxDelayMs: 50, logs });
  ({ control, src, run } = replicator);
});

afterAll(async () => {
  await replicator?.stop();
  await Promise.all([source, target].map((c) => c?.stop()));
});

describe('the comparison under a steady write load (PG 13 → PG 18)', () => {
  it('names a lasting difference among the changes in flight, and verifies the hot tables once it is repaired', async () => {
    await corruptTarget("UPDATE hot SET note = 'wrong' WHERE id = 7000");
    const writer = startWriter();
    try {
      await compareStep(context(), { live: true });
      const results = await comparisons();
      expect(results.get('hot')).toMatchObject({ status: 'mismatch', differences: [{ key: { id: '7000' }, kind: 'different' }] });
      expect(results.get('hot_pairs')).toMatchObject({ status: 'match' });
      // The keyless log changed while compared counts as verified up to its whole change: behind the fence it is compared in full.
      expect(await verified()).toEqual({ hot: false, hot_pairs: true, log: true });

      await corruptTarget("UPDATE hot SET note = (SELECT repeat('x', 7000 % 50)) WHERE id = 7000");
      await compareStep(context(), { live: true });
      expect((await comparisons()).get('hot')).toMatchObject({ status: 'match', differences: [] });
      expect(await verified()).toEqual({ hot: true, hot_pairs: true, log: true });
    } finally {
      expect(await writer.stop()).toBeGreaterThan(0);
    }
  });

  it('at the cutover request, compares the changes in passes while the writes go on; behind the fence only the rest, and finds the sides equal', async () => {
    await requestCutover(control, MIGRATION);
    const writer = startWriter();
    let written: number;
    try {
      const pass = await compareStep(context(), { live: true });
      expect(pass!.tablesByKey).toBeGreaterThanOrEqual(2);
      expect(pass!.rowsRechecked).toBeGreaterThan(0);
      // The log, appended to all along, is compared in full by the first pass, or (written again while the pass compared by key) left for the fence.
      expect(pass!.tablesInFull + pass!.tablesLeftForFence).toBe(1);
      const results = await comparisons();
      for (const table of ['hot', 'hot_pairs']) expect(results.get(table)).toMatchObject({ status: 'match' });
      expect(await verified()).toEqual({ hot: true, hot_pairs: true, log: true });
    } finally {
      written = await writer.stop();
    }
    expect(written).toBeGreaterThan(0);

    const { rows } = await src.query<{ lsn: string }>('SELECT pg_current_wal_insert_lsn()::text AS lsn');
    await setDrainLsn(control, MIGRATION, rows[0]!.lsn);
    expect(await run).toBe('drained');
    const status = await readReplicationStatus(control, MIGRATION);
    expect(parseLsn(status!.processedLsn!)).toBeGreaterThanOrEqual(parseLsn(rows[0]!.lsn));

    const final = await compareStep(context(), { live: false });
    expect(final).toMatchObject({ tablesInFull: 1, tablesByKey: 2 });
    const results = await comparisons();
    for (const table of ['hot', 'hot_pairs', 'log']) expect(results.get(table)).toMatchObject({ status: 'match', differences: [] });
    const [onSource, onTarget] = await Promise.all(
      [src, control].map(async (client) => (await client.query('SELECT id, v, note FROM hot ORDER BY id')).rows),
    );
    expect(onTarget).toEqual(onSource);
    const [logOnSource, logOnTarget] = await Promise.all(
      [src, control].map(async (client) => (await client.query('SELECT at, what FROM log ORDER BY at, what')).rows),
    );
    expect(logOnTarget).toEqual(logOnSource);
  });
});

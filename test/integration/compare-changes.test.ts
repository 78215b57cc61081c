/**
 * The incremental comparison (issue 14) on real clusters, PG 15 → PG 17: the applier records the
 * keys it changes, the comparison while replicating verifies each table from an LSN and forgets
 * what that covers, and the comparison at the cutover request and behind the fence read only
 * what changed since — and still catch a wrong row on the target.
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
import { replicationDecision } from '../../engine/steps/replication-status.js';
import { startClusters, type LocalCluster } from '../../local/dev/cluster.js';
import { startTrackedReplicator, type TrackedReplicator } from '../support/tracked-replicator.js';
import { waitFor } from '../support/wait.js';

const DATABASE = 'shop';
const MIGRATION = 'changes-shop';
const SLOT = 'pgferry_changes_shop';

const TABLES = `
  CREATE TABLE public.items (id int PRIMARY KEY, name text NOT NULL, price numeric(10,2));
  CREATE TABLE public.quiet (id int PRIMARY KEY, v text);
  CREATE TABLE public.log (line text, n int);
  ALTER TABLE public.log REPLICA IDENTITY FULL;
  CREATE TABLE public.pairs (a int, b text, v text, PRIMARY KEY (a, b));`;
const ROWS = `
  INSERT INTO public.items SELECT g, 'item ' || g, g * 1.5 FROM generate_series(1, 1000) g;
  INSERT INTO public.quiet SELECT g, md5(g::text) FROM generate_series(1, 500) g;
  INSERT INTO public.log SELECT 'line ' || g, g FROM generate_series(1, 200) g;
  INSERT INTO public.pairs SELECT g, 'b' || g, 'v' FROM generate_series(1, 100) g;`;

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

/** Waits until the target has applied everything the source has committed so far. */
async function caughtUp(): Promise<void> {
  const { rows } = await src.query<{ lsn: string }>('SELECT pg_current_wal_insert_lsn()::text AS lsn');
  const lsn = parseLsn(rows[0]!.lsn);
  await waitFor('the target to apply the source changes', async () => {
    const applied = (await readReplicationStatus(control, MIGRATION))?.processedLsn;
    return applied !== null && applied !== undefined && parseLsn(applied) >= lsn;
  });
}

/** On the target, a write the stream did not make (as if the applier had written a wrong byte). */
const corruptTarget = (sql: string) => target.sql(`SET session_replication_role = replica; ${sql}`, DATABASE);

async function changedKeys(table: string): Promise<string[]> {
  const { rows } = await control.query<{ key: string }>(
    "SELECT array_to_string(key, ',') AS key FROM pgferry.changed_keys WHERE migration = $1 AND source_table = $2",
    [MIGRATION, table],
  );
  return rows.map((r) => r.key).sort();
}

async function comparisons(): Promise<Map<string, TableComparison>> {
  return new Map((await loadComparisons(control, MIGRATION)).map((c) => [c.source.name, c]));
}

beforeAll(async () => {
  [source, target] = await startClusters([
    { major: 15, label: 'changes-source' },
    { major: 17, label: 'changes-target' },
  ]);
  await source.sql(`CREATE DATABASE ${DATABASE}`);
  await target.sql(`CREATE DATABASE ${DATABASE}`);
  await source.sql(TABLES + ROWS, DATABASE);
  await target.sql(TABLES + ROWS, DATABASE);
  replicator = await startTrackedReplicator({ source, target, database: DATABASE, migration: MIGRATION, slot: SLOT, tables: ['items', 'quiet', 'log', 'pairs'], maxDelayMs: 100, logs });
  ({ control, src, run } = replicator);
});

afterAll(async () => {
  await replicator?.stop();
  await Promise.all([source, target].map((c) => c?.stop()));
});

describe('the incremental comparison (PG 15 → PG 17)', () => {
  it('verifies every table while replicating, then records the keys the applier changes, both keys of a moved row, and keyless tables whole', async () => {
    const first = await compareStep(context(), { live: true });
    expect(first).toEqual({ tablesInFull: 4, tablesByKey: 0, rowsRechecked: 0, tablesNotRead: 0, tablesLeftForFence: 0 });
    const { rows: verified } = await control.query('SELECT source_table, matched FROM pgferry.verified_tables WHERE migration = $1 ORDER BY 1', [MIGRATION]);
    expect(verified).toEqual(['items', 'log', 'pairs', 'quiet'].map((t) => ({ source_table: t, matched: true })));

    await src.query("UPDATE items SET name = 'renamed' WHERE id = 5");
    await src.query('UPDATE items SET id = 1007 WHERE id = 7');
    await src.query('DELETE FROM items WHERE id = 9');
    await src.query("INSERT INTO items VALUES (2000, 'new', 1)");
    await src.query("UPDATE items SET price = price + 1 WHERE id = 5"); // the same key twice: recorded once
    await src.query("UPDATE pairs SET b = 'moved' WHERE a = 3");
    await src.query('UPDATE pairs SET b = $1 WHERE a = 4', ['q"u\\o,te{} NULL']); // a key that needs quoting in an array
    await src.query("INSERT INTO log VALUES ('appended', 201)");
    await caughtUp();

    expect(await changedKeys('items')).toEqual(['1007', '2000', '5', '7', '9']);
    expect(await changedKeys('pairs')).toEqual(['3,b3', '3,moved', '4,b4', '4,q"u\\o,te{} NULL']);
    expect(await changedKeys('quiet')).toEqual([]);
    const { rows: whole } = await control.query(
      'SELECT source_table, key_columns, whole_lsn IS NOT NULL AS whole FROM pgferry.changed_tables WHERE migration = $1 ORDER BY 1',
      [MIGRATION],
    );
    expect(whole).toEqual([
      { source_table: 'items', key_columns: ['id'], whole: false },
      { source_table: 'log', key_columns: null, whole: true },
      { source_table: 'pairs', key_columns: ['a', 'b'], whole: false },
    ]);
  });

  it('compares those changes once more at the cutover request, then forgets what it verified', async () => {
    expect(replicationDecision(spec, await readReplicationStatus(control, MIGRATION)).action).toBe('wait');
    await requestCutover(control, MIGRATION);
    expect(replicationDecision(spec, await readReplicationStatus(control, MIGRATION)).action).toBe('compare');

    const pass = await compareStep(context(), { live: true });
    expect(pass).toEqual({ tablesInFull: 1, tablesByKey: 2, rowsRechecked: 9, tablesNotRead: 1, tablesLeftForFence: 0 });
    const results = await comparisons();
    expect(results.get('items')).toMatchObject({ status: 'match', sourceRows: 3, targetRows: 3 });
    expect(results.get('items')!.note).toMatch(/^rechecked 5 changed row\(s\) by key in [\d.]+ s; verified while replicating from LSN \d+\/[0-9A-F]+$/);
    expect(results.get('pairs')).toMatchObject({ status: 'match', sourceRows: 2, targetRows: 2 });
    expect(results.get('log')).toMatchObject({ status: 'match', sourceRows: 201 });
    expect(results.get('log')!.note).toContain('compared in full: changed without a usable key');

    expect(await changedKeys('items')).toEqual([]);
    expect(await changedKeys('pairs')).toEqual([]);
    const status = await readReplicationStatus(control, MIGRATION);
    expect(status).toMatchObject({ changesSinceLiveCompare: false, incrementalCompared: true });
    expect(replicationDecision(spec, status).action).toBe('cutover');
  });

  it('behind the fence, reads only the changed rows, names a wrong row on the target by key, and compares keyless tables whole', async () => {
    await src.query("UPDATE items SET name = 'changed late' WHERE id = 11");
    await src.query('UPDATE items SET id = 1013 WHERE id = 13');
    await src.query('DELETE FROM log WHERE n = 1');
    await caughtUp();
    // Wrong on the target after the applier applied them: a byte of a changed row, and the old
    // key of the moved row back again.
    await corruptTarget("UPDATE items SET name = 'changed latE' WHERE id = 11; INSERT INTO items VALUES (13, 'item 13', 19.5)");
    // A changed row deleted on both sides, and one that is right, are not differences.
    await src.query('DELETE FROM items WHERE id = 15');
    await src.query("UPDATE items SET name = 'fine' WHERE id = 17");

    const { rows } = await src.query<{ lsn: string }>('SELECT pg_current_wal_insert_lsn()::text AS lsn');
    await setDrainLsn(control, MIGRATION, rows[0]!.lsn);
    expect(await run).toBe('drained');

    const final = await compareStep(context(), { live: false });
    expect(final).toEqual({ tablesInFull: 1, tablesByKey: 1, rowsRechecked: 5, tablesNotRead: 2, tablesLeftForFence: 0 });
    const results = await comparisons();
    expect(results.get('items')).toMatchObject({
      status: 'mismatch',
      differences: [
        { key: { id: '11' }, kind: 'different' },
        { key: { id: '13' }, kind: 'extra' },
      ],
    });
    expect(results.get('items')!.note).toMatch(/^rechecked 5 changed row\(s\) by key in [\d.]+ s; verified while replicating from LSN /);
    expect(results.get('log')).toMatchObject({ status: 'match', sourceRows: 200, targetRows: 200 });
    expect(results.get('log')!.note).toContain('compared in full');
    for (const table of ['quiet', 'pairs']) {
      expect(results.get(table)).toMatchObject({ status: 'match' });
      expect(results.get(table)!.note).toMatch(/^verified while replicating from LSN .*; not changed since, not read again$/);
    }
  });
});

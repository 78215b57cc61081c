import type pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readReplicationStatus, requestCutover } from '../../engine/control/index.js';
import { startClusters, type LocalCluster } from '../../local/dev/cluster.js';
import { runLocalWorkflow, type LocalRunResult } from '../../local/runner/index.js';
import { createSampleDatabase, SAMPLE_DATABASE } from '../../local/dev/sample-database.js';
import { createWorkloadSchema, startWorkload } from '../../local/dev/workload.js';
import { runCli } from '../support/cli.js';
import { scratchDir } from '../support/clusters.js';
import { databaseHashes } from '../support/equality.js';
import { sleep, waitFor as waitUntil } from '../support/wait.js';

let source: LocalCluster;
let target: LocalCluster;
let pg13: LocalCluster;
let pg18: LocalCluster;
const scratch = scratchDir('cdc');

beforeAll(async () => {
  [source, target, pg13, pg18] = await startClusters([
    { major: 15, label: 'cdc15' },
    { major: 17, label: 'cdc17' },
    { major: 13, label: 'cdc13' },
    { major: 18, label: 'cdc18' },
  ]);
});

afterAll(async () => {
  await Promise.all([source, target, pg13, pg18].map((c) => c?.stop()));
  scratch.remove();
});

function cdcSpec(name: string, database: string, extra: Record<string, unknown> = {}, from: LocalCluster = source, to: LocalCluster = target) {
  return {
    name,
    mode: 'full+cdc',
    source: { secret: scratch.secretFor(`${name}-source`, from), database },
    target: { secret: scratch.secretFor(`${name}-target`, to), database },
    fullLoad: { parallelism: 2 },
    ...extra,
  };
}

/** A streamer restart takes a heartbeat timeout plus a task start: allow for a slow machine. */
const waitFor = <T>(what: string, probe: () => Promise<T | undefined | false | null>) => waitUntil(what, probe, 90_000, 100);

/** The tests' own check: every table's sorted COPY text hashed on both sides. */
async function expectSameData(database: string) {
  const sourceHashes = await databaseHashes(source, database);
  const targetHashes = await databaseHashes(target, database);
  expect(Object.keys(sourceHashes).length).toBeGreaterThan(0);
  expect(targetHashes).toEqual(sourceHashes);
}

/**
 * Runs a full+cdc (or cdc) migration to its end: once the streamer applies, `whileStreaming`
 * writes to the source, then cutover is requested (by default as `pgferry cutover` does).
 */
async function migrateLive(
  spec: { name: string } & Record<string, unknown>,
  to: LocalCluster,
  database: string,
  whileStreaming: (control: pg.Client) => Promise<void>,
  cutover: (control: pg.Client) => Promise<unknown> = (control) => requestCutover(control, spec.name),
): Promise<LocalRunResult | undefined> {
  let result: LocalRunResult | undefined;
  const run = runLocalWorkflow(spec).then((r) => (result = r));
  const control = await to.connect(database);
  try {
    await waitFor('the streamer to apply', async () => (await readReplicationStatus(control, spec.name))?.streamingSince);
    await whileStreaming(control);
    expect(result).toBeUndefined();
    await cutover(control);
    await run;
  } finally {
    await control.end();
  }
  return result;
}

async function pgferrySlots(): Promise<{ slots: string[]; publications: string[] }> {
  const [slots] = await source.sql("SELECT coalesce(array_agg(slot_name::text), '{}') AS names FROM pg_replication_slots WHERE slot_name LIKE 'pgferry%'");
  const publications: string[] = [];
  for (const database of ['bank', SAMPLE_DATABASE]) {
    const [rows] = await source.sql("SELECT pubname FROM pg_publication WHERE pubname LIKE 'pgferry%'", database).catch(() => [{ rows: [] }]);
    publications.push(...rows!.rows.map((r: { pubname: string }) => `${database}.${r.pubname}`));
  }
  return { slots: slots!.rows[0].names, publications };
}

/** Waits until the streamer started after `restarts` restarts is applying and has applied more rows than `after`. */
async function streamingPast(control: pg.Client, name: string, restarts: number, after: number) {
  return waitFor(`streamer #${restarts + 1} to apply more than ${after} rows`, async () => {
    const status = await readReplicationStatus(control, name);
    return status?.streamingSince && status.restarts === restarts && status.rowsApplied > after ? status : undefined;
  });
}

describe('full+cdc through the workflow', () => {
  it('keeps the target in sync under a live write load, survives the streamer being SIGKILLed, cuts over and ends identical', async () => {
    await source.sql('CREATE DATABASE bank');
    await target.sql('CREATE DATABASE bank');
    const setup = await source.connect('bank');
    await createWorkloadSchema(setup, { scale: 1, accountsPerScale: 20_000 });
    await setup.end();
    const workload = startWorkload(() => source.connect('bank'), { clients: 2, ratePerSecond: 150, seed: 7, scale: 1, accountsPerScale: 20_000 });

    const name = 'cdc-bank';
    const streamers: number[] = [];
    let result: LocalRunResult | undefined;
    const run = runLocalWorkflow(
      cdcSpec(name, 'bank', { cdc: { heartbeatTimeoutSeconds: 3 }, cutover: { mode: 'manual', fenceSource: true, maxLagSeconds: 5 } }),
      { onTaskStarted: ({ task, pid }) => task === 'Replicate' && streamers.push(pid) },
    ).then((r) => (result = r));

    // Random moments: right after streaming resumed, or a little later while batches are applied.
    const delays = [0, 350, 90, 700, 20, 500];
    const control = await target.connect('bank');
    try {
      let applied = 0;
      for (const [kills, delay] of delays.entries()) {
        applied = (await streamingPast(control, name, kills, applied)).rowsApplied;
        await sleep(delay);
        expect(result, JSON.stringify(result)).toBeUndefined();
        expect(streamers).toHaveLength(kills + 1);
        process.kill(streamers.at(-1)!, 'SIGKILL');
      }
      await streamingPast(control, name, delays.length, applied);
      expect(await requestCutover(control, name)).toBe(true);
      await run;
    } finally {
      await control.end();
    }
    const stats = await Promise.race([workload.finished, sleep(30_000).then(() => workload.stop())]);
    expect(result, JSON.stringify(result)).toMatchObject({ status: 'SUCCEEDED' });
    // The fence stopped the load; every kind of change was replicated while it ran.
    expect(stats.stoppedBecause).toBeDefined();
    expect(stats.transactions).toBeGreaterThan(300);
    for (const count of Object.values(stats.byKind)) expect(count).toBeGreaterThan(0);

    await expectSameData('bank');
    const [restarts] = await target.sql(`SELECT restarts FROM pgferry.replication_status WHERE migration = '${name}'`, 'bank');
    expect(restarts!.rows[0].restarts).toBeGreaterThanOrEqual(delays.length);
    const [comparisons] = await target.sql(`SELECT count(*) FILTER (WHERE status <> 'match')::int AS different FROM pgferry.comparisons WHERE migration = '${name}'`, 'bank');
    expect(comparisons!.rows[0].different).toBe(0);
    // Behind the fence only what changed since the comparison while replicating was read (issue 14).
    const [notes] = await target.sql(`SELECT source_table, note FROM pgferry.comparisons WHERE migration = '${name}' ORDER BY 1`, 'bank');
    const byTable = Object.fromEntries(notes!.rows.map((r) => [r.source_table, r.note]));
    expect(byTable.pgbench_accounts, JSON.stringify(byTable)).toMatch(/^rechecked [\d,]+ changed row\(s\) by key in [\d.]+ s; verified while replicating from LSN /);
    expect(byTable.pgbench_history, JSON.stringify(byTable)).toMatch(/^compared in full: changed without a usable key/);
    expect(await pgferrySlots()).toEqual({ slots: [], publications: [] });
  });

  it('replicates every built-in type byte for byte, including rows without a primary key', async () => {
    await createSampleDatabase(source);
    await target.sql(`CREATE DATABASE ${SAMPLE_DATABASE}`);
    const name = 'cdc-types';
    const spec = cdcSpec(name, SAMPLE_DATABASE, { cdc: { heartbeatTimeoutSeconds: 10 } });
    const specFile = scratch.writeJson(`${name}.json`, spec);
    const result = await migrateLive(
      spec,
      target,
      SAMPLE_DATABASE,
      async (control) => {
        await waitFor('the comparison while replicating', async () => (await readReplicationStatus(control, name))?.liveCompared);
        const live = await runCli('status', specFile);
        expect(live.stdout).toMatch(/comparison: 17 of 17 tables match \(compared while replicating\)/);
        await source.sql(
          `INSERT INTO shop.all_types SELECT id + 100000, i2, i4, i8, f4, f8, num, num_scaled, mny, b, ch, vc, t, nm, bt, bits, vbits, d, tm, tmtz, ts, tstz, iv,
                  u, j, jb, x, inet_v, cidr_v, mac, mac8, pt, ln, ls, bx, pth, pg, cir, tsv, tsq, lsn, o, r_int, r_num, r_ts, r_date, a_int, a_text, a_2d, a_ts
             FROM shop.all_types;
           UPDATE shop.all_types a
              SET (i2, i4, i8, f4, f8, num, num_scaled, mny, b, ch, vc, t, nm, bt, bits, vbits, d, tm, tmtz, ts, tstz, iv,
                   u, j, jb, x, inet_v, cidr_v, mac, mac8, pt, ln, ls, bx, pth, pg, cir, tsv, tsq, lsn, o, r_int, r_num, r_ts, r_date, a_int, a_text, a_2d, a_ts) =
                  (SELECT i2, i4, i8, f4, f8, num, num_scaled, mny, b, ch, vc, t, nm, bt, bits, vbits, d, tm, tmtz, ts, tstz, iv,
                   u, j, jb, x, inet_v, cidr_v, mac, mac8, pt, ln, ls, bx, pth, pg, cir, tsv, tsq, lsn, o, r_int, r_num, r_ts, r_date, a_int, a_text, a_2d, a_ts
                     FROM shop.all_types b WHERE b.id = (SELECT min(id) FROM shop.all_types c WHERE c.id > a.id AND c.id < 100000))
            WHERE a.id < 100000 AND EXISTS (SELECT 1 FROM shop.all_types c WHERE c.id > a.id AND c.id < 100000);
           DELETE FROM shop.all_types WHERE id % 3 = 0 AND id > 100000;
           UPDATE shop.page_views SET duration = duration + interval '1 second' WHERE path LIKE '%1%';
           DELETE FROM shop.page_views WHERE ctid IN (SELECT ctid FROM shop.page_views ORDER BY viewed_at LIMIT 25);
           INSERT INTO shop.page_views SELECT * FROM shop.page_views LIMIT 5;
           UPDATE shop.documents SET title = title || ' (edited)' WHERE id % 2 = 0;
           UPDATE "Sales Data"."MixedCase" SET "Id" = "Id" + 1000000;`,
          SAMPLE_DATABASE,
        );
        const status = await runCli('status', specFile);
        expect(status.code).toBe(0);
        expect(status.stdout).toMatch(/Migration cdc-types: replicate/);
        expect(status.stdout).toMatch(/full load: 17\/17 tables copied/);
        expect(status.stdout).toMatch(/CDC: lag [\d.]+ s/);
      },
      async () => {
        const cutover = await runCli('cutover', specFile);
        expect(cutover).toMatchObject({ code: 0, stderr: '' });
        expect(cutover.stdout).toMatch(/Cutover requested for cdc-types/);
      },
    );
    expect(result, JSON.stringify(result)).toMatchObject({ status: 'SUCCEEDED' });
    await expectSameData(SAMPLE_DATABASE);
    expect((await runCli('status', specFile)).stdout).toMatch(/Migration cdc-types: done/);
    const late = await runCli('cutover', specFile);
    expect(late.code).toBe(1);
    expect(late.stderr).toMatch(/not replicating changes \(phase: done\): there is nothing to cut over/);
  });

  it('streams from PostgreSQL 13 (protocol 1, no in-progress streaming) to 18 and ends identical', async () => {
    await pg13.sql('CREATE DATABASE legacy');
    await pg18.sql('CREATE DATABASE legacy');
    await pg13.sql(
      `CREATE TABLE accounts (id int PRIMARY KEY, owner text NOT NULL, balance numeric(12, 2), opened timestamptz, tags text[]);
       CREATE TABLE ledger (at timestamptz, amount numeric, note text);
       ALTER TABLE ledger REPLICA IDENTITY FULL;
       INSERT INTO accounts SELECT g, 'owner ' || g, g * 1.5, '2020-01-01 00:00:00.123456+00'::timestamptz + g * interval '1 hour', ARRAY['a' || g]
         FROM generate_series(1, 2000) g;
       INSERT INTO ledger SELECT '2021-01-01'::timestamptz + (g % 50) * interval '1 day', g % 7, 'n' FROM generate_series(1, 500) g;`,
      'legacy',
    );
    const name = 'cdc-from13';
    const result = await migrateLive(cdcSpec(name, 'legacy', { cdc: { heartbeatTimeoutSeconds: 10 } }, pg13, pg18), pg18, 'legacy', async () => {
      await pg13.sql(
        `UPDATE accounts SET balance = balance * -1, tags = array_append(tags, 'moved') WHERE id % 3 = 0;
         UPDATE accounts SET id = id + 100000 WHERE id % 10 = 0;
         DELETE FROM accounts WHERE id % 7 = 0;
         INSERT INTO accounts VALUES (999999, 'new', 'NaN', 'infinity', '{}');
         DELETE FROM ledger WHERE ctid IN (SELECT ctid FROM ledger WHERE amount = 3 LIMIT 20);
         UPDATE ledger SET note = 'edited' WHERE amount = 5;`,
        'legacy',
      );
    });
    expect(result, JSON.stringify(result)).toMatchObject({ status: 'SUCCEEDED' });
    const [restarts] = await pg18.sql(`SELECT restarts FROM pgferry.replication_status WHERE migration = '${name}'`, 'legacy');
    expect(restarts!.rows[0].restarts).toBe(0);
    expect(await databaseHashes(pg18, 'legacy')).toEqual(await databaseHashes(pg13, 'legacy'));
  });

  it('mode "cdc" streams into tables that already hold the data, then compares them all', async () => {
    const setup = `CREATE TABLE items (id int PRIMARY KEY, name text, price numeric);
                   INSERT INTO items SELECT g, 'item ' || g, g / 3.0 FROM generate_series(1, 1000) g;`;
    await source.sql('CREATE DATABASE streamonly');
    await target.sql('CREATE DATABASE streamonly');
    await source.sql(setup, 'streamonly');
    await target.sql(setup, 'streamonly');
    const name = 'cdc-only';
    const result = await migrateLive({ ...cdcSpec(name, 'streamonly'), mode: 'cdc' }, target, 'streamonly', async () => {
      await source.sql("UPDATE items SET price = -price WHERE id % 4 = 0; DELETE FROM items WHERE id > 990; INSERT INTO items VALUES (5000, 'late', NULL)", 'streamonly');
    });
    expect(result, JSON.stringify(result)).toMatchObject({ status: 'SUCCEEDED' });
    const [comparisons] = await target.sql(`SELECT source_table, status FROM pgferry.comparisons WHERE migration = '${name}'`, 'streamonly');
    expect(comparisons!.rows).toEqual([{ source_table: 'items', status: 'match' }]);
    expect(await databaseHashes(target, 'streamonly')).toEqual(await databaseHashes(source, 'streamonly'));
  });
});

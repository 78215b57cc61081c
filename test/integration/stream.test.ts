import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { formatLsn, parseLsn, type PgoutputMessage, type TupleValue } from '../../engine/cdc/pgoutput.js';
import { createSlotWithSnapshot, dropSlotAndPublication, ensurePublication, slotState } from '../../engine/cdc/slot.js';
import { ChangeStream, type KeepaliveEvent, type StreamedMessage } from '../../engine/cdc/stream.js';
import { startClusters, type LocalCluster } from '../../local/dev/cluster.js';
import { clientConfig, replicationConnector, withClient } from '../support/clusters.js';
import { sleep, waitFor as waitUntil } from '../support/wait.js';

const majors = [13, 17] as const;
type Major = (typeof majors)[number];

/** A short wal_sender_timeout makes the server ask for a reply about every second. */
const SETTINGS = { autovacuum: 'off', wal_sender_timeout: '2s' };

const clusters = new Map<Major, LocalCluster>();

const SETUP = `
  CREATE SCHEMA shop;
  CREATE TABLE shop.items (id int PRIMARY KEY, name text, at timestamptz);
`;


/** Creates publication and slot (releasing the snapshot right away); returns the consistent point. */
async function createSlot(cluster: LocalCluster, slotName: string, publicationName: string): Promise<string> {
  await withClient(cluster, (c) => ensurePublication(c, { name: publicationName, tables: [{ schema: 'shop', name: 'items' }] }));
  const holder = await createSlotWithSnapshot(replicationConnector(cluster), slotName);
  await holder.release();
  return holder.slot.consistentLsn;
}

/** Polls every 25 ms, for 10 s unless told. */
const waitFor = (what: string, condition: () => boolean | Promise<boolean>, timeoutMs = 10_000) => waitUntil(what, condition, timeoutMs, 25);

const text = (values: TupleValue[] | undefined) => values?.map((v) => (typeof v === 'string' ? v : v === null ? 'null' : String(v)));
const commits = (messages: StreamedMessage[]) => messages.filter((m) => m.message.tag === 'commit') as (StreamedMessage & { message: Extract<PgoutputMessage, { tag: 'commit' }> })[];
/** The id (first column) of every insert, as text: which transactions were delivered. */
const insertedIds = (messages: StreamedMessage[]) => messages.flatMap((m) => (m.message.tag === 'insert' ? [text(m.message.newTuple)![0]] : []));

beforeAll(async () => {
  const started = await startClusters(majors.map((major) => ({ major, label: 'stream', settings: SETTINGS })));
  started.forEach((cluster, i) => clusters.set(majors[i]!, cluster));
  await Promise.all([...clusters.values()].map((cluster) => cluster.sql(SETUP)));
});

afterAll(async () => {
  await Promise.all([...clusters.values()].map((cluster) => cluster.stop()));
});

describe.each(majors)('PostgreSQL %i', (major) => {
  const cluster = () => clusters.get(major)!;
  const streams: ChangeStream[] = [];
  const open = (options: ConstructorParameters<typeof ChangeStream>[1]) => {
    const stream = new ChangeStream(clientConfig(cluster()), options);
    streams.push(stream);
    return stream;
  };
  const stopAll = () => Promise.all(streams.splice(0).map((s) => s.stop()));

  it('streams begin/relation/insert/update/delete/commit in order, values as text', async () => {
    const slotName = `decode_${major}`;
    const publicationName = 'pub_decode';
    const consistentLsn = await createSlot(cluster(), slotName, publicationName);
    try {
      // One simple query is one implicit transaction: four calls, four transactions.
      await cluster().sql(`INSERT INTO shop.items VALUES (1, 'one', '2024-05-06 07:08:09.123456+00'), (2, 'two', NULL)`);
      await cluster().sql(`UPDATE shop.items SET name = 'uno' WHERE id = 1`);
      await cluster().sql(`DELETE FROM shop.items WHERE id = 2`);
      await cluster().sql(`INSERT INTO shop.items VALUES (3, 'it''s', '1999-12-31 23:59:59.999999+00')`);
      const received: StreamedMessage[] = [];
      const stream = open({ slotName, publicationName, startLsn: consistentLsn, appliedLsn: () => consistentLsn });
      const errors: Error[] = [];
      stream.on('error', (e) => errors.push(e));
      await stream.start(async (batch) => {
        for (const m of batch) {
          await sleep(1); // an async handler: delivery waits for it
          received.push(m);
        }
      });
      await waitFor('four commits', () => commits(received).length >= 4);
      expect(received.map((m) => m.message.tag)).toEqual([
        'begin', 'relation', 'insert', 'insert', 'commit',
        'begin', 'update', 'commit',
        'begin', 'delete', 'commit',
        'begin', 'insert', 'commit',
      ]);
      const [, relation, insert1, insert2, , , update, , , del, , , insert3] = received.map((m) => m.message);
      expect(relation).toMatchObject({ tag: 'relation', schema: 'shop', name: 'items', replicaIdentity: 'default' });
      expect((relation as Extract<PgoutputMessage, { tag: 'relation' }>).columns.map((c) => [c.name, c.partOfKey])).toEqual([['id', true], ['name', false], ['at', false]]);
      expect(text((insert1 as Extract<PgoutputMessage, { tag: 'insert' }>).newTuple)).toEqual(['1', 'one', '2024-05-06 07:08:09.123456+00']);
      expect(text((insert2 as Extract<PgoutputMessage, { tag: 'insert' }>).newTuple)).toEqual(['2', 'two', 'null']);
      expect(text((update as Extract<PgoutputMessage, { tag: 'update' }>).newTuple)).toEqual(['1', 'uno', '2024-05-06 07:08:09.123456+00']);
      expect(text((del as Extract<PgoutputMessage, { tag: 'delete' }>).oldKey)).toEqual(['2', 'null', 'null']);
      expect(text((insert3 as Extract<PgoutputMessage, { tag: 'insert' }>).newTuple)).toEqual(['3', "it's", '1999-12-31 23:59:59.999999+00']);

      // The XLogData position is meaningful for commits (their end LSN, increasing); others carry
      // whatever the walsender was at (a relation message 0/0), so nothing else relies on it.
      const commitLsns = commits(received).map((c) => parseLsn(c.lsn));
      commitLsns.slice(1).forEach((lsn, i) => expect(lsn > commitLsns[i]!).toBe(true));
      for (const m of received) expect(formatLsn(parseLsn(m.lsn))).toBe(m.lsn);
      for (const c of commits(received)) expect(c.lsn).toBe(c.message.endLsn);
      expect(commitLsns[0]! > parseLsn(consistentLsn)).toBe(true);
      expect(errors).toEqual([]);

      await stream.stop();
      await stream.stop(); // idempotent
      expect((await withClient(cluster(), (c) => slotState(c, slotName))).active).toBe(false);
    } finally {
      await stopAll();
      await withClient(cluster(), (c) => dropSlotAndPublication(c, { slotName, publicationName }));
      await cluster().sql('TRUNCATE shop.items');
    }
  });

  it('answers keepalives with appliedLsn() only, acknowledges on request, resumes after the acknowledged LSN', async () => {
    const slotName = `ack_${major}`;
    const publicationName = 'pub_ack';
    const consistentLsn = await createSlot(cluster(), slotName, publicationName);
    const state = () => withClient(cluster(), (c) => slotState(c, slotName));
    try {
      for (let id = 1; id <= 3; id++) await cluster().sql(`INSERT INTO shop.items VALUES (${id}, 'tx ${id}')`);

      let applied = consistentLsn;
      const received: StreamedMessage[] = [];
      const keepalives: (KeepaliveEvent & { afterCommits: number })[] = [];
      const stream = open({ slotName, publicationName, startLsn: consistentLsn, appliedLsn: () => applied, statusIntervalMs: 0 });
      // No unsolicited status updates here: every report the server gets answers one of its keepalives.
      stream.on('error', (e) => {
        throw e;
      });
      stream.on('keepalive', (k) => keepalives.push({ ...k, afterCommits: commits(received).length }));
      await stream.start((batch) => {
        for (const m of batch) {
          received.push(m);
          // The target applies (and commits) only the first transaction.
          if (m.message.tag === 'commit' && commits(received).length === 1) applied = m.message.endLsn;
        }
      });
      await waitFor('three commits', () => commits(received).length >= 3);
      for (let id = 4; id <= 5; id++) await cluster().sql(`INSERT INTO shop.items VALUES (${id}, 'tx ${id}')`);
      await waitFor('five commits', () => commits(received).length >= 5);
      const firstCommit = commits(received)[0]!.message.endLsn;
      const lastCommit = commits(received)[4]!.message.endLsn;
      expect(applied).toBe(firstCommit);

      // At least one keepalive asking for a reply after everything was received; let status updates settle too.
      const seen = keepalives.length;
      await waitFor('a keepalive requesting a reply', () => keepalives.slice(seen).some((k) => k.replyRequested && k.afterCommits === 5), 10_000);
      await sleep(1_000);
      const replies = keepalives.filter((k) => k.replyRequested);
      expect(replies.length).toBeGreaterThan(0);
      expect(replies.every((k) => k.replied === formatLsn(parseLsn(k.replied!)) && parseLsn(k.replied!) <= parseLsn(firstCommit))).toBe(true);
      // The server told us about WAL far beyond what was applied...
      expect(parseLsn(keepalives.at(-1)!.serverLsn) >= parseLsn(lastCommit)).toBe(true);
      // ...yet the slot holds exactly what the target applied, never the received LSN.
      const held = await state();
      expect(held.active).toBe(true);
      expect(parseLsn(held.confirmedFlushLsn!) <= parseLsn(firstCommit)).toBe(true);
      expect(held.confirmedFlushLsn).toBe(firstCommit);

      // Acknowledging beyond appliedLsn() is refused.
      await expect(stream.acknowledge(lastCommit)).rejects.toMatchObject({ name: 'pgferry.AcknowledgeAhead' });

      // The target catches up to the third transaction: acknowledge it, the slot follows.
      const thirdCommit = commits(received)[2]!.message.endLsn;
      applied = thirdCommit;
      await stream.acknowledge(thirdCommit);
      await waitFor('confirmed_flush_lsn to reach the acknowledged LSN', async () => (await state()).confirmedFlushLsn === thirdCommit, 5_000);
      // Keepalive replies after that keep reporting it (never more, never less).
      await sleep(1_500);
      expect((await state()).confirmedFlushLsn).toBe(thirdCommit);

      await stream.stop();
      expect(await state()).toMatchObject({ exists: true, active: false, confirmedFlushLsn: thirdCommit });
      await expect(stream.acknowledge(thirdCommit)).rejects.toMatchObject({ name: 'pgferry.StreamNotRunning' });
      expect(insertedIds(received)).toEqual(['1', '2', '3', '4', '5']);

      // Restart from the slot: transactions 4 and 5 come again, 1 to 3 do not.
      const again: StreamedMessage[] = [];
      const resumed = open({ slotName, publicationName, appliedLsn: () => applied });
      resumed.on('error', (e) => {
        throw e;
      });
      await resumed.start((batch) => void again.push(...batch));
      await waitFor('two commits after restart', () => commits(again).length >= 2);
      await sleep(500);
      expect(insertedIds(again)).toEqual(['4', '5']);
      expect(again.map((m) => m.message.tag)).toEqual(['begin', 'relation', 'insert', 'commit', 'begin', 'insert', 'commit']);
      expect(commits(again).map((c) => c.message.endLsn)).toEqual(commits(received).slice(3).map((c) => c.message.endLsn));
      expect((await state()).active).toBe(true);

      // Acknowledge everything, restart once more: nothing is delivered.
      applied = lastCommit;
      await resumed.acknowledge(lastCommit);
      await waitFor('confirmed_flush_lsn to reach the last commit', async () => (await state()).confirmedFlushLsn === lastCommit, 5_000);
      await resumed.stop();
      expect((await state()).active).toBe(false);

      const idle: StreamedMessage[] = [];
      const third = open({ slotName, publicationName, startLsn: thirdCommit, appliedLsn: () => applied });
      await third.start((batch) => void idle.push(...batch));
      await sleep(1_500);
      expect(idle).toEqual([]);
      await third.stop();
      expect((await state()).active).toBe(false);
    } finally {
      await stopAll();
      await withClient(cluster(), (c) => dropSlotAndPublication(c, { slotName, publicationName }));
      await cluster().sql('TRUNCATE shop.items');
    }
  });

  it('surfaces a lost connection and a failing handler as errors, and stops delivering', async () => {
    const slotName = `lost_${major}`;
    const publicationName = 'pub_lost';
    const consistentLsn = await createSlot(cluster(), slotName, publicationName);
    const state = () => withClient(cluster(), (c) => slotState(c, slotName));
    try {
      // A slot that does not exist: start() rejects with a readable message.
      const missing = open({ slotName: 'no_such_slot', publicationName, appliedLsn: () => consistentLsn });
      await expect(missing.start(() => undefined)).rejects.toMatchObject({ name: 'pgferry.StreamFailed', message: expect.stringContaining('no_such_slot') });

      const lost = open({ slotName, publicationName, startLsn: consistentLsn, appliedLsn: () => consistentLsn });
      const lostErrors: Error[] = [];
      lost.on('error', (e) => lostErrors.push(e));
      await lost.start(() => undefined);
      await waitFor('the walsender', async () => (await state()).active);
      await withClient(cluster(), (c) => c.query('SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots WHERE slot_name = $1', [slotName]));
      await waitFor('an error', () => lostErrors.length > 0);
      expect(lostErrors[0]).toMatchObject({ name: 'pgferry.StreamLost', message: expect.stringContaining(slotName) });
      await sleep(200);
      expect(lostErrors).toHaveLength(1);
      await waitFor('the slot to be released', async () => !(await state()).active);

      await cluster().sql(`INSERT INTO shop.items VALUES (1, 'a')`);
      await cluster().sql(`INSERT INTO shop.items VALUES (2, 'b')`);
      const failing = open({ slotName, publicationName, startLsn: consistentLsn, appliedLsn: () => consistentLsn });
      const failErrors: Error[] = [];
      const seen: StreamedMessage[] = [];
      failing.on('error', (e) => failErrors.push(e));
      await failing.start((batch) => {
        for (const m of batch) {
          seen.push(m);
          if (m.message.tag === 'insert') throw new Error('target rejected the row');
        }
      });
      await waitFor('an error', () => failErrors.length > 0);
      await sleep(300);
      expect(failErrors.map((e) => e.message)).toEqual(['target rejected the row']);
      // Nothing after the failed message was handed over.
      expect(seen.map((m) => m.message.tag)).toEqual(['begin', 'relation', 'insert']);
      await waitFor('the slot to be released', async () => !(await state()).active);
    } finally {
      await stopAll();
      await withClient(cluster(), (c) => dropSlotAndPublication(c, { slotName, publicationName }));
      await cluster().sql('TRUNCATE shop.items');
    }
  });

  it('leaves no slot behind', async () => {
    const { rows } = await withClient(cluster(), (c) => c.query('SELECT slot_name FROM pg_replication_slots'));
    expect(rows).toEqual([]);
  });
});

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  decodePgoutput,
  formatLsn,
  parseLsn,
  UNCHANGED_TOAST,
  type PgoutputMessage,
  type RelationMessage,
  type TupleValue,
} from '../../engine/cdc/pgoutput.js';
import { startClusters, type LocalCluster } from '../../local/dev/cluster.js';

const majors = [13, 17, 18] as const;
type Major = (typeof majors)[number];

interface Row {
  lsn: string;
  xid: string;
  data: Buffer;
  message: PgoutputMessage;
}

interface Captured {
  cluster: LocalCluster;
  rows: Row[];
  oids: Record<string, number>;
  typedText: string[][];
  docsBody: string;
  currentLsn: string;
}

/**
 * autovacuum off: on 13, pgoutput frames even empty transactions (e.g. autoanalyze), which would
 * add begin/commit pairs. synchronous_commit on: the SQL decoding functions read only up to the
 * flushed WAL position, so asynchronously committed last transactions could be missed.
 */
const SETTINGS = { autovacuum: 'off', synchronous_commit: 'on' };

const captured = new Map<Major, Captured>();
const clusters: LocalCluster[] = [];

const SETUP = `
  CREATE TABLE items (id int PRIMARY KEY, name text);
  CREATE TABLE nokey (a int, b text);
  ALTER TABLE nokey REPLICA IDENTITY FULL;
  CREATE TABLE docs (id int PRIMARY KEY, counter int, body text);
  ALTER TABLE docs ALTER COLUMN body SET STORAGE EXTERNAL;
  CREATE TABLE typed (id int PRIMARY KEY, n numeric, ts timestamptz, raw bytea, doc jsonb, f float8, tags text[], label varchar(20));
  CREATE PUBLICATION p FOR ALL TABLES;
`;

/** One entry per source transaction (each sql() call with several statements is one implicit transaction). */
const CHANGES = [
  `INSERT INTO items VALUES (1, 'one'), (2, 'two'), (3, 'three')`,
  `INSERT INTO nokey VALUES (1, 'a'), (2, NULL)`,
  `INSERT INTO docs VALUES (1, 0, repeat('x', 100000))`,
  `INSERT INTO typed VALUES
     (1, 12345678901234567890.123456789, '2024-02-29 13:14:15.123456+00', '\\xdeadbeef00', '{"b": [1, 2.50], "a": "ü"}', 'NaN', ARRAY['x', 'y z', '"q"', NULL], 'héllo'),
     (2, NULL, NULL, NULL, NULL, NULL, NULL, NULL),
     (3, -0.000001, '1999-12-31 23:59:59.000001-08', '\\x', '[]', '-Infinity', '{}', '')`,
  `UPDATE items SET id = 10 WHERE id = 1`,
  `UPDATE docs SET counter = counter + 1 WHERE id = 1`,
  `DELETE FROM items WHERE id = 2`,
  `DELETE FROM nokey WHERE a = 1`,
  `UPDATE nokey SET b = 'c' WHERE a = 2`,
  `BEGIN;
   INSERT INTO items VALUES (20, 'twenty');
   UPDATE items SET name = 'TWENTY' WHERE id = 20;
   INSERT INTO typed VALUES (4, 1e-20, 'infinity', '\\x00ff', 'null', 1.0000000000000002, ARRAY['{a}', 'b,c'], 'multi');
   DELETE FROM items WHERE id = 3;
   COMMIT`,
  `TRUNCATE items, nokey RESTART IDENTITY CASCADE`,
  `SELECT pg_logical_emit_message(true, 'pgferry', 'hello')`,
];

async function capture(major: Major, cluster: LocalCluster): Promise<Captured> {
  await cluster.sql(SETUP);
  await cluster.sql(`SELECT pg_create_logical_replication_slot('s', 'pgoutput')`);
  for (const change of CHANGES) await cluster.sql(change);
  const client = await cluster.connect();
  try {
    const messagesOption = major >= 14 ? `, 'messages', 'true'` : '';
    const changes = await client.query<{ lsn: string; xid: string; data: Buffer }>(
      `SELECT lsn::text AS lsn, xid::text AS xid, data FROM pg_logical_slot_get_binary_changes('s', NULL, NULL, 'proto_version', '1', 'publication_names', 'p'${messagesOption})`,
    );
    const oidRows = await client.query<{ relname: string; oid: number }>(
      `SELECT relname::text, oid::int AS oid FROM pg_class WHERE relname IN ('items', 'nokey', 'docs', 'typed') AND relnamespace = 'public'::regnamespace`,
    );
    const typed = await client.query({
      text: `SELECT id::text, n::text, ts::text, raw::text, doc::text, f::text, tags::text, label::text FROM typed ORDER BY id`,
      rowMode: 'array',
    });
    const docs = await client.query<{ body: string }>(`SELECT body FROM docs WHERE id = 1`);
    const current = await client.query<{ lsn: string }>(`SELECT pg_current_wal_lsn()::text AS lsn`);
    return {
      cluster,
      rows: changes.rows.map((row) => ({ ...row, message: decodePgoutput(row.data) })),
      oids: Object.fromEntries(oidRows.rows.map((r) => [r.relname, r.oid])),
      typedText: typed.rows as string[][],
      docsBody: docs.rows[0]!.body,
      currentLsn: current.rows[0]!.lsn,
    };
  } finally {
    await client.end();
  }
}

beforeAll(async () => {
  clusters.push(...(await startClusters(majors.map((major) => ({ major, label: `pgoutput${major}`, settings: SETTINGS })))));
  const results = await Promise.all(majors.map((major, i) => capture(major, clusters[i]!)));
  majors.forEach((major, i) => captured.set(major, results[i]!));
});

afterAll(async () => {
  await Promise.all(clusters.map((cluster) => cluster.stop()));
});

const text = (value: string): TupleValue => value;
const NULL: TupleValue = null;

/** Messages grouped per transaction, relation/type messages removed (pgoutput may re-send them after invalidations). */
function transactions(rows: Row[]): PgoutputMessage[][] {
  const result: PgoutputMessage[][] = [];
  let current: PgoutputMessage[] | undefined;
  for (const { message } of rows) {
    if (message.tag === 'relation' || message.tag === 'type') continue;
    if (message.tag === 'begin') {
      expect(current).toBeUndefined();
      current = [message];
    } else if (current) {
      current.push(message);
      if (message.tag === 'commit') {
        result.push(current);
        current = undefined;
      }
    } else {
      result.push([message]);
    }
  }
  expect(current).toBeUndefined();
  return result;
}

/** Strip begin/commit to compare the changes inside each transaction. */
const bodies = (txns: PgoutputMessage[][]) => txns.map((txn) => txn.filter((m) => m.tag !== 'begin' && m.tag !== 'commit'));

describe.each(majors)('pgoutput from PostgreSQL %i', (major) => {
  const get = () => captured.get(major)!;

  it('decodes every row, and every lsn column value round-trips through parseLsn/formatLsn', () => {
    const { rows, currentLsn } = get();
    expect(rows.length).toBeGreaterThan(20);
    for (const row of rows) expect(formatLsn(parseLsn(row.lsn))).toBe(row.lsn);
    expect(formatLsn(parseLsn(currentLsn))).toBe(currentLsn);
    for (const row of rows) expect(parseLsn(row.lsn)).toBeLessThanOrEqual(parseLsn(currentLsn));
  });

  it('frames each transaction as begin … commit with consistent LSNs and xids', () => {
    const { rows } = get();
    const txns = transactions(rows);
    // 12 source transactions; on 13 (no 'messages' option) the emit_message transaction is empty but still framed.
    expect(txns).toHaveLength(CHANGES.length);
    let previousEnd = 0n;
    for (const txn of txns) {
      const begin = txn[0]!;
      const commit = txn[txn.length - 1]!;
      if (begin.tag !== 'begin' || commit.tag !== 'commit') throw new Error('transaction not framed by begin/commit');
      expect(begin.finalLsn).toBe(commit.commitLsn);
      expect(begin.commitTime).toBe(commit.commitTime);
      expect(commit.flags).toBe(0);
      expect(parseLsn(commit.endLsn)).toBeGreaterThan(parseLsn(commit.commitLsn));
      expect(parseLsn(commit.commitLsn)).toBeGreaterThan(previousEnd);
      previousEnd = parseLsn(commit.endLsn);
      expect(begin.xid).toBeGreaterThan(0);
      // Commit time is microseconds since 2000-01-01 and should be close to now.
      const unixMicros = commit.commitTime + 946_684_800_000_000n;
      expect(Math.abs(Number(unixMicros / 1000n) - Date.now())).toBeLessThan(10 * 60_000);
    }
    for (const row of rows) {
      if (row.message.tag === 'begin') expect(row.message.xid).toBe(Number(row.xid));
      // The SQL interface reports the end of the commit record as the commit row's lsn.
      if (row.message.tag === 'commit') expect(row.lsn).toBe(row.message.endLsn);
    }
    expect(bodies(txns).map((body) => body.map((m) => m.tag))).toEqual([
      ['insert', 'insert', 'insert'],
      ['insert', 'insert'],
      ['insert'],
      ['insert', 'insert', 'insert'],
      ['update'],
      ['update'],
      ['delete'],
      ['delete'],
      ['update'],
      ['insert', 'update', 'insert', 'delete'],
      ['truncate'],
      major >= 14 ? ['message'] : [],
    ]);
  });

  it('sends relation metadata before first use, with names, key flags and replica identity', () => {
    const { rows, oids } = get();
    const relations = new Map<number, RelationMessage>();
    for (const { message } of rows) {
      if (message.tag === 'relation') relations.set(message.relationId, message);
      if (message.tag === 'insert' || message.tag === 'update' || message.tag === 'delete') {
        expect(relations.has(message.relationId)).toBe(true);
        const tuple = message.tag === 'delete' ? (message.oldKey ?? message.oldTuple) : message.newTuple;
        expect(tuple).toHaveLength(relations.get(message.relationId)!.columns.length);
      }
      if (message.tag === 'truncate') for (const id of message.relationIds) expect(relations.has(id)).toBe(true);
    }
    const col = (name: string, typeOid: number, partOfKey: boolean, typeMod = -1) => ({ name, typeOid, typeMod, partOfKey });
    expect(relations.get(oids.items!)).toEqual({
      tag: 'relation',
      relationId: oids.items,
      schema: 'public',
      name: 'items',
      replicaIdentity: 'default',
      columns: [col('id', 23, true), col('name', 25, false)],
    });
    expect(relations.get(oids.nokey!)).toEqual({
      tag: 'relation',
      relationId: oids.nokey,
      schema: 'public',
      name: 'nokey',
      replicaIdentity: 'full',
      columns: [col('a', 23, true), col('b', 25, true)],
    });
    expect(relations.get(oids.docs!)).toMatchObject({
      name: 'docs',
      replicaIdentity: 'default',
      columns: [col('id', 23, true), col('counter', 23, false), col('body', 25, false)],
    });
    expect(relations.get(oids.typed!)).toMatchObject({
      name: 'typed',
      replicaIdentity: 'default',
      columns: [
        col('id', 23, true),
        col('n', 1700, false),
        col('ts', 1184, false),
        col('raw', 17, false),
        col('doc', 3802, false),
        col('f', 701, false),
        col('tags', 1009, false),
        col('label', 1043, false, 24),
      ],
    });
  });

  it('keeps values byte-for-byte as the source prints them with ::text', () => {
    const { rows, oids, typedText } = get();
    const typedInserts = rows
      .map((r) => r.message)
      .filter((m): m is Extract<PgoutputMessage, { tag: 'insert' }> => m.tag === 'insert' && m.relationId === oids.typed);
    expect(typedInserts).toHaveLength(4);
    const expected = typedText.map((row) => row.map((value) => (value === null ? NULL : text(value))));
    expect(typedInserts.map((m) => m.newTuple)).toEqual(expected);
    // Spot checks on the representations that matter most.
    const first = typedInserts[0]!.newTuple;
    expect(first[1]).toEqual(text('12345678901234567890.123456789'));
    expect(first[2] as string).toMatch(/\.123456/);
    expect(first[3]).toEqual(text('\\xdeadbeef00'));
    expect(first[4]).toEqual(text('{"a": "ü", "b": [1, 2.50]}'));
    expect(first[5]).toEqual(text('NaN'));
    expect(first[6]).toEqual(text('{x,"y z","\\"q\\"",NULL}'));
    expect(first[7]).toEqual(text('héllo'));
    expect(typedInserts[1]!.newTuple).toEqual([text('2'), NULL, NULL, NULL, NULL, NULL, NULL, NULL]);
    expect(typedInserts[3]!.newTuple[5]).toEqual(text('1.0000000000000002'));

    const itemInserts = rows
      .map((r) => r.message)
      .filter((m) => m.tag === 'insert' && m.relationId === oids.items)
      .map((m) => (m as Extract<PgoutputMessage, { tag: 'insert' }>).newTuple);
    expect(itemInserts).toEqual([
      [text('1'), text('one')],
      [text('2'), text('two')],
      [text('3'), text('three')],
      [text('20'), text('twenty')],
    ]);
  });

  it('marks an untouched TOASTed column as unchanged-toast', () => {
    const { rows, oids, docsBody } = get();
    const messages = rows.map((r) => r.message);
    const insert = messages.find((m) => m.tag === 'insert' && m.relationId === oids.docs) as Extract<PgoutputMessage, { tag: 'insert' }>;
    expect(docsBody).toHaveLength(100000);
    expect(insert.newTuple).toEqual([text('1'), text('0'), text(docsBody)]);
    const update = messages.find((m) => m.tag === 'update' && m.relationId === oids.docs);
    expect(update).toEqual({ tag: 'update', relationId: oids.docs, newTuple: [text('1'), text('1'), UNCHANGED_TOAST] });
  });

  it('sends the old key for key changes and deletes on a PK table, the full old tuple for REPLICA IDENTITY FULL', () => {
    const { rows, oids } = get();
    const txns = bodies(transactions(rows));
    expect(txns[4]).toEqual([
      { tag: 'update', relationId: oids.items, oldKey: [text('1'), NULL], newTuple: [text('10'), text('one')] },
    ]);
    expect(txns[6]).toEqual([{ tag: 'delete', relationId: oids.items, oldKey: [text('2'), NULL] }]);
    expect(txns[7]).toEqual([{ tag: 'delete', relationId: oids.nokey, oldTuple: [text('1'), text('a')] }]);
    expect(txns[8]).toEqual([
      { tag: 'update', relationId: oids.nokey, oldTuple: [text('2'), NULL], newTuple: [text('2'), text('c')] },
    ]);
    // Several statements in one transaction, in statement order; the non-key update sends no old key.
    expect(txns[9]).toEqual([
      { tag: 'insert', relationId: oids.items, newTuple: [text('20'), text('twenty')] },
      { tag: 'update', relationId: oids.items, newTuple: [text('20'), text('TWENTY')] },
      expect.objectContaining({ tag: 'insert', relationId: oids.typed }),
      { tag: 'delete', relationId: oids.items, oldKey: [text('3'), NULL] },
    ]);
  });

  it('decodes TRUNCATE of two tables with their OIDs and option flags', () => {
    const { rows, oids } = get();
    const truncate = bodies(transactions(rows))[10]![0]!;
    if (truncate.tag !== 'truncate') throw new Error(`expected truncate, got ${truncate.tag}`);
    expect(truncate.cascade).toBe(true);
    expect(truncate.restartIdentity).toBe(true);
    expect([...truncate.relationIds].sort()).toEqual([oids.items!, oids.nokey!].sort());
  });

  it.skipIf(major < 14)('decodes a transactional logical message', () => {
    const { rows } = get();
    const message = bodies(transactions(rows))[11]![0]!;
    if (message.tag !== 'message') throw new Error(`expected message, got ${message.tag}`);
    expect(message.transactional).toBe(true);
    expect(message.prefix).toBe('pgferry');
    expect(message.content.toString('utf8')).toBe('hello');
    expect(formatLsn(parseLsn(message.lsn))).toBe(message.lsn);
  });

  it('rejects every truncated prefix of the real messages with a clear Error', () => {
    const { rows } = get();
    for (const { data } of rows) {
      const step = data.length > 2000 ? 997 : 1;
      for (let length = 1; length < data.length; length += step) {
        expect(() => decodePgoutput(data.subarray(0, length))).toThrow(/truncated/);
      }
      expect(() => decodePgoutput(Buffer.concat([data, Buffer.from([0])]))).toThrow(/trailing/);
    }
  });

  it('drops the slot and leaves none behind', async () => {
    const { cluster } = get();
    await cluster.sql(`SELECT pg_drop_replication_slot('s')`);
    const [result] = await cluster.sql(`SELECT count(*)::int AS n FROM pg_replication_slots`);
    expect(result!.rows[0].n).toBe(0);
  });
});

describe('pgoutput decoder on malformed or unsupported input', () => {
  it('names an unknown tag byte', () => {
    expect(() => decodePgoutput(Buffer.from('Z'))).toThrow(/unknown pgoutput message tag 'Z' \(0x5a\)/);
    expect(() => decodePgoutput(Buffer.from([0x01, 0, 0]))).toThrow(/unknown pgoutput message tag 0x01/);
  });

  it('rejects two-phase messages of later protocol versions', () => {
    for (const tag of ['b', 'P', 'K', 'r', 'p']) {
      expect(() => decodePgoutput(Buffer.concat([Buffer.from(tag), Buffer.alloc(16)]))).toThrow(new RegExp(`'${tag}'.*protocol`));
    }
  });

  it('rejects empty and truncated buffers without crashing', () => {
    expect(() => decodePgoutput(Buffer.alloc(0))).toThrow(/empty/);
    expect(() => decodePgoutput(Buffer.from('B\x00\x00'))).toThrow(/truncated/);
    // Insert whose text value claims 10 bytes but carries 2.
    const insert = Buffer.from([0x49, 0, 0, 0, 1, 0x4e, 0, 1, 0x74, 0, 0, 0, 10, 0x61, 0x62]);
    expect(() => decodePgoutput(insert)).toThrow(/truncated/);
    // Relation name without its NUL terminator.
    expect(() => decodePgoutput(Buffer.from('R\x00\x00\x00\x01public\x00ite'))).toThrow(/truncated/);
  });

  it('rejects bad markers and tuple kinds', () => {
    expect(() => decodePgoutput(Buffer.from([0x49, 0, 0, 0, 1, 0x58, 0, 0]))).toThrow(/expected 'N'/);
    expect(() => decodePgoutput(Buffer.from([0x44, 0, 0, 0, 1, 0x4e, 0, 0]))).toThrow(/'K' or 'O'/);
    expect(() => decodePgoutput(Buffer.from([0x49, 0, 0, 0, 1, 0x4e, 0, 1, 0x78]))).toThrow(/tuple column kind 'x'/);
  });

  it('decodes a hand-built binary value, origin and type message', () => {
    expect(decodePgoutput(Buffer.from([0x49, 0, 0, 0, 7, 0x4e, 0, 2, 0x62, 0, 0, 0, 2, 0, 0xff, 0x75]))).toEqual({
      tag: 'insert',
      relationId: 7,
      newTuple: [Buffer.from([0, 0xff]), UNCHANGED_TOAST],
    });
    const origin = Buffer.concat([Buffer.from('O'), Buffer.from('00000001000000ff', 'hex'), Buffer.from('node1\0')]);
    expect(decodePgoutput(origin)).toEqual({ tag: 'origin', originLsn: '1/FF', name: 'node1' });
    const type = Buffer.concat([Buffer.from('Y'), Buffer.from('00004001', 'hex'), Buffer.from('public\0mood\0')]);
    expect(decodePgoutput(type)).toEqual({ tag: 'type', typeOid: 0x4001, schema: 'public', name: 'mood' });
  });

  it('formats and parses LSNs like pg_lsn', () => {
    expect(formatLsn(0n)).toBe('0/0');
    expect(formatLsn(0x16b374d848n)).toBe('16/B374D848');
    expect(formatLsn(0xffffffffffffffffn)).toBe('FFFFFFFF/FFFFFFFF');
    expect(parseLsn('16/b374d848')).toBe(0x16b374d848n);
    expect(() => parseLsn('16-B374D848')).toThrow(/invalid LSN/);
    expect(() => parseLsn('1/123456789')).toThrow(/invalid LSN/);
  });
});

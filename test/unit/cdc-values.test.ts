/**
 * Value encoding of the CDC applier and the pure parts around it, without PostgreSQL: buffered
 * rows, identities, array literals, COPY text, bound-parameter SQL, and target-table metadata.
 */
import { describe, expect, it } from 'vitest';
import { ApplyError } from '../../engine/cdc/apply/errors.js';
import { keyValues, newRelation, bufferedBytes, sameLayout } from '../../engine/cdc/apply/relation.js';
import { fullRowMatch, unnest } from '../../engine/cdc/apply/statements.js';
import { toTargetTable, type TargetCatalogRow } from '../../engine/cdc/apply/target-table.js';
import { arrayLiteral, copyText, fill, hasToast, identity, Params, rowBytes, TOAST, BinaryColumnError, type Row } from '../../engine/cdc/apply/values.js';
import type { RelationMessage } from '../../engine/cdc/pgoutput.js';

const message: RelationMessage = {
  tag: 'relation',
  relationId: 7,
  schema: 'app',
  name: 'We"ird',
  replicaIdentity: 'default',
  columns: [
    { name: 'id', typeOid: 23, typeMod: -1, partOfKey: true },
    { name: 'b', typeOid: 603, typeMod: -1, partOfKey: false },
    { name: 'tags', typeOid: 1009, typeMod: -1, partOfKey: false },
  ],
};
const rel = newRelation(message);

describe('buffered rows', () => {
  it('keeps text as sent, NULL, and unchanged-TOAST markers, and counts their memory', () => {
    const row: Row = ['abc', null, TOAST];
    expect(rowBytes(row)).toBe(3 + 16 * 3);
    expect(hasToast(row)).toBe(true);
    expect(fill(row, ['x', 'y', 'z'])).toEqual(['abc', null, 'z']);
  });

  it('refuses binary values, naming the column', () => {
    expect(() => rowBytes([null, Buffer.from('x')])).toThrow(BinaryColumnError);
    expect(() => bufferedBytes(rel, ['1', Buffer.from('x'), null], 'new tuple')).toThrow(
      /column b of app\.We"ird in binary format/,
    );
  });

  it('refuses a tuple whose width differs from its Relation message', () => {
    expect(() => bufferedBytes(rel, [null], 'old tuple')).toThrow(ApplyError);
  });
});

describe('identity', () => {
  it('tells NULL, empty text and unchanged TOAST apart', () => {
    const ids = [identity([null]), identity(['']), identity([TOAST]), identity(['\u0000u'.slice(1)])];
    expect(new Set(ids).size).toBe(4);
  });

  it('cannot be confused across column boundaries', () => {
    expect(identity(['a', 'b'])).not.toBe(identity(['ab', '']));
    expect(identity([null, 'x'])).not.toBe(identity(['n', 'x']));
    expect(identity(['1', '2'])).toBe(identity(['1', '2']));
  });
});

describe('keys', () => {
  it('takes an unchanged-TOAST key value from the old row, and refuses it without one', () => {
    expect(keyValues(rel, [TOAST, null, null], ['5', null, null])).toEqual(['5']);
    expect(() => keyValues(rel, [TOAST, null, null])).toThrow(/unchanged-TOAST key column id/);
  });

  it('classifies replica identities', () => {
    expect(rel.mode).toBe('key');
    expect(rel.quoted).toBe('"app"."We""ird"');
    expect(newRelation({ ...message, replicaIdentity: 'full' }).mode).toBe('full');
    expect(newRelation({ ...message, replicaIdentity: 'nothing' }).mode).toBe('nothing');
    expect(newRelation({ ...message, columns: message.columns.map((c) => ({ ...c, partOfKey: false })) }).mode).toBe('nothing');
  });

  it('sees a changed layout', () => {
    expect(sameLayout(message, { ...message })).toBe(true);
    expect(sameLayout(message, { ...message, columns: [...message.columns.slice(0, 2), { ...message.columns[2]!, typeMod: 4 }] })).toBe(false);
  });
});

describe('array literals', () => {
  it('quotes every element, escapes quotes and backslashes, leaves NULL bare, and uses the delimiter', () => {
    expect(arrayLiteral(['a', 'b"c', 'd\\e', null, ''], ',')).toBe('{"a","b\\"c","d\\\\e",NULL,""}');
    expect(arrayLiteral(['(1,1),(0,0)', '(2,2),(1,1)'], ';')).toBe('{"(1,1),(0,0)";"(2,2),(1,1)"}');
  });
});

describe('COPY text', () => {
  it('escapes backslash, newline, carriage return and tab, writes NULL as \\N, and picks the columns', () => {
    const text = [...copyText([['1', 'a\\b\nc\rd\te', null], ['2', '', 'x']], [0, 1, 2])].join('');
    expect(text).toBe('1\ta\\\\b\\nc\\rd\\te\t\\N\n2\t\tx\n');
    expect([...copyText([['1', 'skip', 'x']], [2, 0])].join('')).toBe('x\t1\n');
  });

  it('yields blocks of about 1 MiB, whole lines only', () => {
    const big = 'v'.repeat(300_000);
    const blocks = [...copyText(Array.from({ length: 8 }, () => [big]), [0])];
    expect(blocks.length).toBe(2);
    expect(blocks.every((b) => b.endsWith('\n'))).toBe(true);
    expect(blocks.join('').split('\n').length).toBe(9);
  });
});

describe('target table and statements', () => {
  const catalog: TargetCatalogRow = {
    relkind: 'r',
    columns: [
      { name: 'extra', type: 'text', arrayType: 'text[]', delim: ',', generated: false, identityAlways: false, eq: 'plain' },
      { name: 'tags', type: 'text[]', arrayType: null, delim: ',', generated: false, identityAlways: false, eq: null },
      { name: 'b', type: 'box', arrayType: 'box[]', delim: ';', generated: true, identityAlways: false, eq: null },
      { name: 'id', type: 'integer', arrayType: 'integer[]', delim: ',', generated: false, identityAlways: true, eq: 'plain' },
    ],
    unique_indexes: [['id'], ['extra', 'id']],
  };

  it('aligns the target columns with the source, leaving generated columns unwritten', () => {
    const table = toTargetTable(rel, catalog);
    expect(table.columns.map((c) => c.type)).toEqual(['integer', 'box', 'text[]']);
    expect(table.writable).toEqual([0, 2]);
    expect(table.uniqueKey).toBe(true);
    expect(table.alwaysIdentity).toEqual(new Set([0]));
    expect(table.overriding).toBe('OVERRIDING SYSTEM VALUE ');
    expect(table.only).toBe('ONLY ');
    expect(toTargetTable(rel, { ...catalog, relkind: 'p', unique_indexes: [['extra', 'id']] })).toMatchObject({ only: '', partitioned: true, uniqueKey: false });
  });

  it('names what is missing on the target', () => {
    expect(() => toTargetTable(rel, undefined)).toThrow(/does not exist on the target/);
    expect(() => toTargetTable(rel, { ...catalog, columns: catalog.columns!.filter((c) => c.name !== 'tags') })).toThrow(/Column tags of app\.We"ird does not exist/);
    const generatedKey = catalog.columns!.map((c) => (c.name === 'id' ? { ...c, generated: true } : c));
    expect(() => toTargetTable(rel, { ...catalog, columns: generatedKey })).toThrow(/Key column id .* generated/);
  });

  it('binds unnest() arrays with each column type, text[] for array columns', () => {
    const table = toTargetTable(rel, catalog);
    const params = new Params();
    const u = unnest(table, [0, 2], [['1', '2'], ['{a}', null]], params, [{ name: 'n', values: ['1', '3'] }], true);
    expect(u.from).toBe('unnest($1::integer[], $2::text[], $3::int8[]) WITH ORDINALITY AS u(c0, c2, n, ord)');
    expect(params.values).toEqual(['{"1","2"}', '{"{a}",NULL}', '{"1","3"}']);
    expect(u.expr(0)).toBe('u.c0');
    expect(u.expr(2)).toBe('u.c2::text[]');
  });

  it('matches a whole row with equality where the type has it and exact text equality always', () => {
    const table = toTargetTable(rel, catalog);
    const sql = fullRowMatch(table, (i) => i === 2, (i) => `$${i + 1}`);
    expect(sql).toBe('s."id" = $1 AND s."tags" IS NULL AND ROW(s."id", s."tags")::text = ROW($1, NULL::text[])::text');
  });
});

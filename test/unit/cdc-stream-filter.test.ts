/** The per-table operation filter between the CDC stream and the applier, without PostgreSQL. */
import { describe, expect, it } from 'vitest';
import type { PgoutputMessage, RelationMessage } from '../../engine/cdc/pgoutput.js';
import { operationFilter } from '../../engine/cdc/stream-filter.js';

const relation = (relationId: number, schema: string, name: string): RelationMessage => ({
  tag: 'relation',
  relationId,
  schema,
  name,
  replicaIdentity: 'default',
  columns: [{ name: 'id', typeOid: 23, typeMod: -1, partOfKey: true }],
});
const tuple = ['1'];
const insert = (relationId: number): PgoutputMessage => ({ tag: 'insert', relationId, newTuple: tuple });
const update = (relationId: number): PgoutputMessage => ({ tag: 'update', relationId, newTuple: tuple });
const remove = (relationId: number): PgoutputMessage => ({ tag: 'delete', relationId, oldKey: tuple });

describe('operationFilter', () => {
  it('passes every message unchanged when no table is restricted', () => {
    const keep = operationFilter(undefined);
    const message = remove(1);
    expect(keep(message)).toBe(message);
    expect(operationFilter({})(message)).toBe(message);
  });

  it('drops the operations a table leaves out and keeps the rest', () => {
    const keep = operationFilter({ 'app.audit': ['insert'], 'app.orders': ['insert', 'update'] });
    for (const r of [relation(1, 'app', 'audit'), relation(2, 'app', 'orders'), relation(3, 'app', 'other')]) expect(keep(r)).toBe(r);
    expect([insert(1), update(1), remove(1)].map((m) => keep(m)?.tag)).toEqual(['insert', undefined, undefined]);
    expect([insert(2), update(2), remove(2)].map((m) => keep(m)?.tag)).toEqual(['insert', 'update', undefined]);
    expect([insert(3), update(3), remove(3)].map((m) => keep(m)?.tag)).toEqual(['insert', 'update', 'delete']);
  });

  it('keeps apart a table whose name contains a dot and the table its unquoted key would name', () => {
    const keep = operationFilter({ 'app."v1.2"': ['insert'] });
    keep(relation(1, 'app', 'v1.2'));
    keep(relation(2, 'app.v1', '2'));
    expect([remove(1), remove(2)].map((m) => keep(m)?.tag)).toEqual([undefined, 'delete']);
  });

  it('narrows a TRUNCATE to the tables that allow it, and drops it when none does', () => {
    const keep = operationFilter({ 'app.audit': ['insert'], 'app.logs': ['insert', 'truncate'] });
    keep(relation(1, 'app', 'audit'));
    keep(relation(2, 'app', 'logs'));
    keep(relation(3, 'app', 'other'));
    const truncate: PgoutputMessage = { tag: 'truncate', cascade: false, restartIdentity: true, relationIds: [1, 2, 3] };
    expect(keep(truncate)).toEqual({ ...truncate, relationIds: [2, 3] });
    expect(keep({ ...truncate, relationIds: [1] })).toBeUndefined();
  });

  it('follows a relation id that is reused for another table', () => {
    const keep = operationFilter({ 'app.audit': ['insert'] });
    keep(relation(1, 'app', 'audit'));
    expect(keep(remove(1))).toBeUndefined();
    keep(relation(1, 'app', 'renamed'));
    expect(keep(remove(1))?.tag).toBe('delete');
  });

  it('leaves transaction and other messages alone', () => {
    const keep = operationFilter({ 'app.audit': [] });
    const begin: PgoutputMessage = { tag: 'begin', finalLsn: '0/1', commitTime: 0n, xid: 5 };
    expect(keep(begin)).toBe(begin);
  });
});

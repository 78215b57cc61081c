import { describe, expect, it } from 'vitest';
import { LateChangeWatch } from '../../engine/cdc/fence-check.js';
import type { PgoutputMessage, RelationMessage } from '../../engine/cdc/pgoutput.js';

const accounts: RelationMessage = {
  tag: 'relation',
  relationId: 1,
  schema: 'public',
  name: 'accounts',
  replicaIdentity: 'default',
  columns: [
    { name: 'id', typeOid: 23, typeMod: -1, partOfKey: true },
    { name: 'balance', typeOid: 20, typeMod: -1, partOfKey: false },
  ],
};
const text = (value: string) => value;
const begin: PgoutputMessage = { tag: 'begin', finalLsn: '0/0', commitTime: 0n, xid: 1 };
const commit = (commitLsn: string): PgoutputMessage => ({ tag: 'commit', flags: 0, commitLsn, endLsn: commitLsn, commitTime: 0n });

describe('LateChangeWatch', () => {
  it('names the row changes committed after the drain LSN once, by table and key, whole or streamed in progress, but not aborted ones', () => {
    const watch = new LateChangeWatch();
    const messages: PgoutputMessage[] = [
      accounts,
      begin,
      { tag: 'insert', relationId: 1, newTuple: [text('1'), text('10')] },
      commit('0/100'),
      begin,
      { tag: 'update', relationId: 1, oldKey: [text('5'), null], newTuple: [text('6'), text('0')] },
      { tag: 'delete', relationId: 1, oldKey: [text('7'), null] },
      commit('0/200'),
      { tag: 'stream-start', xid: 9, firstSegment: true },
      { tag: 'insert', xid: 9, relationId: 1, newTuple: [text('42'), text('1')] },
      { tag: 'stream-stop' },
      { tag: 'stream-start', xid: 10, firstSegment: true },
      { tag: 'insert', xid: 10, relationId: 1, newTuple: [text('43'), text('1')] },
      { tag: 'stream-stop' },
      { tag: 'stream-abort', xid: 10, subxid: 10 },
      { tag: 'stream-commit', xid: 9, flags: 0, commitLsn: '0/300', endLsn: '0/308', commitTime: 0n },
      begin,
      { tag: 'truncate', cascade: false, restartIdentity: false, relationIds: [1] },
      commit('0/400'),
    ];
    for (const message of messages) watch.observe(message);
    expect(watch.takeAfter(0x150n)).toEqual({
      forgotten: false,
      changes: [
        { commitLsn: '0/200', schema: 'public', table: 'accounts', rows: 2, keys: ['update id=5', 'delete id=7'] },
        { commitLsn: '0/300', schema: 'public', table: 'accounts', rows: 1, keys: ['insert id=42'] },
        { commitLsn: '0/400', schema: 'public', table: 'accounts', rows: 1, keys: ['truncate'] },
      ],
    });
    expect(watch.takeAfter(0x150n)).toEqual({ forgotten: false, changes: [] });
    expect(watch.takeAfter(0n).changes.map((c) => c.commitLsn)).toEqual(['0/100']);
  });

  it('says when more transactions came after the drain LSN than it keeps', () => {
    const watch = new LateChangeWatch();
    watch.observe(accounts);
    for (let i = 1; i <= 2_500; i++) {
      watch.observe(begin);
      watch.observe({ tag: 'insert', relationId: 1, newTuple: [text(String(i)), text('0')] });
      watch.observe(commit(`0/${(i * 16).toString(16).toUpperCase()}`));
    }
    const { changes, forgotten } = watch.takeAfter(0n);
    expect(forgotten).toBe(true);
    expect(changes.length).toBeGreaterThanOrEqual(1_000);
    expect(changes.at(-1)).toMatchObject({ keys: ['insert id=2500'] });
    expect(watch.takeAfter(0n)).toEqual({ forgotten: false, changes: [] });
  });
});

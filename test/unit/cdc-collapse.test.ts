/**
 * The set-wise collapse of the CDC applier, without PostgreSQL: which runs of changes collapse
 * into one DELETE / UPDATE per column set / insert, and which must go row by row (undefined).
 */
import { describe, expect, it } from 'vitest';
import { collapseKeyed, planKeyed, planMultiset, type KeyEntry } from '../../engine/cdc/apply/collapse.js';
import { newRelation, type Change } from '../../engine/cdc/apply/relation.js';
import { TOAST, type Row } from '../../engine/cdc/apply/values.js';
import type { RelationMessage } from '../../engine/cdc/pgoutput.js';

function relationMessage(replicaIdentity: RelationMessage['replicaIdentity'], keyColumns: string[]): RelationMessage {
  return {
    tag: 'relation',
    relationId: 1,
    schema: 'app',
    name: 'docs',
    replicaIdentity,
    columns: ['id', 'counter', 'title', 'body'].map((name) => ({ name, typeOid: 25, typeMod: -1, partOfKey: keyColumns.includes(name) })),
  };
}

/** app.docs (id, counter, title, body) keyed by id. */
const docs = newRelation(relationMessage('default', ['id']));
const ALL = [0, 1, 2, 3];

const ins = (row: Row): Change => ({ op: 'I', old: undefined, new: row, lsn: '0/1' });
/** An UPDATE; `old` is the old key (sent only when the key changed), full width with NULL elsewhere like pgoutput's 'K' tuple. */
const upd = (row: Row, oldKey?: string): Change => ({ op: 'U', old: oldKey === undefined ? undefined : [oldKey, null, null, null], new: row, lsn: '0/1' });
const del = (key: string): Change => ({ op: 'D', old: [key, null, null, null], new: undefined, lsn: '0/1' });

const byKey = (entries: Map<string, KeyEntry> | undefined) =>
  Object.fromEntries([...(entries ?? new Map<string, KeyEntry>()).values()].map((e) => [e.key.join(','), { existed: e.existed, values: e.values }]));

describe('collapseKeyed: runs that collapse', () => {
  it('folds an insert and later updates of the same key into one new row', () => {
    const entries = collapseKeyed(docs, [ins(['1', '0', 'a', 'x']), upd(['1', '1', 'b', TOAST]), upd(['1', '2', 'b', TOAST])]);
    expect(byKey(entries)).toEqual({ 1: { existed: false, values: ['1', '2', 'b', 'x'] } });
  });

  it('keeps unchanged-TOAST columns of a row the chunk does not hold as a patch', () => {
    const entries = collapseKeyed(docs, [upd(['7', '1', 't', TOAST]), upd(['7', '2', 't', TOAST])]);
    expect(byKey(entries)).toEqual({ 7: { existed: true, values: ['7', '2', 't', TOAST] } });
  });

  it('lets an insert then a delete of the same key cancel out (nothing to write)', () => {
    const entries = collapseKeyed(docs, [ins(['1', '0', 'a', 'x']), del('1')]);
    expect(byKey(entries)).toEqual({ 1: { existed: false, values: undefined } });
    expect(planKeyed(docs, entries!.values(), ALL, new Set())).toEqual({ deletes: [], inserts: [], updates: [] });
  });

  it('turns a delete then an insert of the same key into an update of every column', () => {
    const entries = collapseKeyed(docs, [del('3'), ins(['3', '9', 'new', 'y'])]);
    expect(byKey(entries)).toEqual({ 3: { existed: true, values: ['3', '9', 'new', 'y'] } });
    const plan = planKeyed(docs, entries!.values(), ALL, new Set());
    expect(plan.updates.map((u) => u.cols)).toEqual([[1, 2, 3]]);
  });

  it('collapses primary keys swapped through a third value', () => {
    const entries = collapseKeyed(docs, [upd(['3', '0', 'a', 'x'], '1'), upd(['1', '0', 'b', 'y'], '2'), upd(['2', '0', 'a', 'x'], '3')]);
    expect(byKey(entries)).toEqual({
      1: { existed: true, values: ['1', '0', 'b', 'y'] },
      2: { existed: true, values: ['2', '0', 'a', 'x'] },
      3: { existed: false, values: undefined },
    });
  });

  it('fills unchanged-TOAST values of a key-changing update from the row the chunk holds', () => {
    const entries = collapseKeyed(docs, [ins(['1', '0', 'a', 'big']), upd(['2', '0', 'a', TOAST], '1')]);
    expect(byKey(entries)).toEqual({ 1: { existed: false, values: undefined }, 2: { existed: false, values: ['2', '0', 'a', 'big'] } });
  });

  it('takes an unchanged-TOAST key value from the old key', () => {
    const entries = collapseKeyed(docs, [upd([TOAST, '5', 't', 'x'], '4')]);
    expect(byKey(entries)).toEqual({ 4: { existed: true, values: [TOAST, '5', 't', 'x'] } });
  });
});

describe('collapseKeyed: runs that fall back to row by row', () => {
  it('an insert over a key the chunk already holds', () => {
    expect(collapseKeyed(docs, [ins(['1', '0', 'a', 'x']), ins(['1', '1', 'b', 'y'])])).toBeUndefined();
  });

  it('an update or a delete of a key the chunk deleted', () => {
    expect(collapseKeyed(docs, [del('1'), upd(['1', '1', 'b', 'y'])])).toBeUndefined();
    expect(collapseKeyed(docs, [del('1'), del('1')])).toBeUndefined();
  });

  it('a key moving onto a key the chunk holds', () => {
    expect(collapseKeyed(docs, [ins(['2', '0', 'a', 'x']), upd(['2', '0', 'b', 'y'], '1')])).toBeUndefined();
  });

  it('a key-changing update whose unchanged-TOAST value lives only in the target', () => {
    expect(collapseKeyed(docs, [upd(['2', '0', 'a', TOAST], '1')])).toBeUndefined();
  });

  it('a key-changing update of a row the chunk holds only as a patch', () => {
    expect(collapseKeyed(docs, [upd(['1', '1', 'a', TOAST]), upd(['2', '1', 'a', TOAST], '1')])).toBeUndefined();
  });
});

describe('planKeyed', () => {
  it('sorts final states into deletes, inserts and updates grouped by the columns known to change', () => {
    const entries = collapseKeyed(docs, [
      del('1'),
      ins(['2', '0', 'a', 'x']),
      upd(['3', '1', 't', TOAST]),
      upd(['4', '1', 't', TOAST]),
      upd(['5', '1', 't', 'body']),
    ]);
    const plan = planKeyed(docs, entries!.values(), ALL, new Set());
    expect(plan.deletes.map((e) => e.key)).toEqual([['1']]);
    expect(plan.inserts.map((e) => e.key)).toEqual([['2']]);
    expect(plan.updates.map((u) => [u.cols, u.entries.map((e) => e.key[0])])).toEqual([
      [[1, 2], ['3', '4']],
      [[1, 2, 3], ['5']],
    ]);
  });

  it('never sets key, generated (not writable) or GENERATED ALWAYS columns', () => {
    const entries = collapseKeyed(docs, [upd(['3', '1', 't', 'b'])]);
    const plan = planKeyed(docs, entries!.values(), [0, 1, 3], new Set([1]));
    expect(plan.updates.map((u) => u.cols)).toEqual([[3]]);
  });

  it('proves existence only when no column is known to change', () => {
    const entries = collapseKeyed(docs, [upd(['3', TOAST, TOAST, TOAST])]);
    expect(planKeyed(docs, entries!.values(), ALL, new Set()).updates).toEqual([{ cols: [], entries: [expect.objectContaining({ key: ['3'] })] }]);
  });

  it('keys on several columns', () => {
    const pairs = newRelation(relationMessage('index', ['id', 'title']));
    const entries = collapseKeyed(pairs, [ins(['1', '0', 'a', 'x']), ins(['1', '0', 'b', 'x']), del('1')]);
    // del('1') has title NULL in its old key: a third, different key.
    expect(Object.keys(byKey(entries))).toEqual(['1,a', '1,b', '1,']);
  });
});

describe('planMultiset (REPLICA IDENTITY FULL)', () => {
  const full = (op: Change['op'], old: Row | undefined, row: Row | undefined): Change => ({ op, old, new: row, lsn: '0/1' });

  it('cancels a row inserted and deleted in the same chunk', () => {
    const row = ['1', '0', 'a', 'x'];
    expect(planMultiset([full('I', undefined, row), full('D', [...row], undefined)], ALL)).toEqual({ removals: [], additions: [] });
  });

  it('turns an update into one old row out and the new row in, unchanged TOAST filled from the old row', () => {
    const plan = planMultiset([full('U', ['1', '0', 'a', 'x'], ['1', '1', 'a', TOAST])], ALL);
    expect(plan.additions).toEqual([['1', '1', 'a', 'x']]);
    expect(plan.removals).toEqual([{ nulls: new Set(), rows: [['1', '0', 'a', 'x']], counts: ['1'] }]);
  });

  it('removes duplicates as often as the source deleted them, grouped by NULL pattern', () => {
    const dup = ['1', null, 'a', 'x'];
    const plan = planMultiset([full('D', [...dup], undefined), full('D', [...dup], undefined), full('D', ['2', '0', null, 'y'], undefined)], ALL);
    expect(plan.removals).toEqual([
      { nulls: new Set([1]), rows: [dup], counts: ['2'] },
      { nulls: new Set([2]), rows: [['2', '0', null, 'y']], counts: ['1'] },
    ]);
    expect(plan.additions).toEqual([]);
  });

  it('adds a row as often as it was inserted, and compares only the given columns', () => {
    const plan = planMultiset([full('I', undefined, ['1', 'g1', 'a', 'x']), full('I', undefined, ['1', 'g2', 'a', 'x'])], [0, 2, 3]);
    expect(plan.additions).toHaveLength(2);
    expect(planMultiset([full('I', undefined, ['1', 'g1', 'a', 'x']), full('D', ['1', 'g2', 'a', 'x'], undefined)], [0, 2, 3])).toEqual({ removals: [], additions: [] });
  });
});

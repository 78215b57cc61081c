/**
 * Issue 15 item 2: how the applier narrows a table's changes to its where filter (apply/filter.ts).
 * The filter itself is evaluated by the source (integration and e2e tests); here a matcher
 * stands in for it, selecting rows whose region is 'eu'.
 */
import { describe, expect, it } from 'vitest';
import { applyFilterSettings, filterPart, type StreamFilters } from '../../engine/cdc/apply/filter.js';
import { newRelation, type Change, type Relation } from '../../engine/cdc/apply/relation.js';
import { TOAST, type Row } from '../../engine/cdc/apply/values.js';
import type { RelationMessage } from '../../engine/cdc/pgoutput.js';

const message = (identity: RelationMessage['replicaIdentity'], key: string[]): RelationMessage => ({
  tag: 'relation',
  relationId: 1,
  schema: 'public',
  name: 'orders',
  replicaIdentity: identity,
  columns: ['id', 'region', 'note'].map((name) => ({ name, typeOid: 25, typeMod: -1, partOfKey: key.includes(name) })),
});

const eu: StreamFilters = {
  forRelation: () => ({ where: "region = 'eu'", excluded: new Set(['note']) }),
  matching: async (_, __, rows) => rows.map((row) => row[1] === 'eu'),
};

const full = () => newRelation(message('full', []));
const change = (op: Change['op'], old: Row | undefined, row: Row | undefined): Change => ({ op, old, new: row, lsn: '0/1' });

async function narrowed(rel: Relation, changes: Change[]) {
  const part = await filterPart(rel, "region = 'eu'", { changes, insertsOnly: false }, eu);
  return part.changes.map((c) => [c.op, c.old?.[0] ?? null, c.new?.[0] ?? null]);
}

describe('a where filter under CDC, in the applier', () => {
  it('keeps changes inside, turns moves in into inserts and moves out into deletes, and drops the rest', async () => {
    expect(
      await narrowed(full(), [
        change('I', undefined, ['1', 'eu', 'a']),
        change('I', undefined, ['2', 'us', 'a']),
        change('U', ['3', 'eu', 'a'], ['3', 'eu', 'b']),
        change('U', ['4', 'us', 'a'], ['4', 'eu', 'b']),
        change('U', ['5', 'eu', 'a'], ['5', 'us', 'b']),
        change('U', ['6', 'us', 'a'], ['6', 'us', 'b']),
        change('D', ['7', 'eu', 'a'], undefined),
        change('D', ['8', 'us', 'a'], undefined),
      ]),
    ).toEqual([
      ['I', null, '1'],
      ['U', '3', '3'],
      ['I', null, '4'],
      ['D', '5', null],
      ['D', '7', null],
    ]);
  });

  it('inserts a row moved in under REPLICA IDENTITY FULL whole, its unchanged TOAST values taken from the old row', async () => {
    const part = await filterPart(full(), 'x', { changes: [change('U', ['4', 'us', 'long text'], ['4', 'eu', TOAST])], insertsOnly: false }, eu);
    expect(part).toEqual({ changes: [change('I', undefined, ['4', 'eu', 'long text'])], insertsOnly: true });
  });

  it('refuses a row moved in whose unchanged TOAST value only the source has (a key identity), naming the REPLICA IDENTITY FULL fix', async () => {
    const keyed = newRelation(message('default', ['region', 'id']));
    const moved = change('U', ['4', 'us', null], ['4', 'eu', TOAST]);
    await expect(filterPart(keyed, 'x', { changes: [moved], insertsOnly: false }, eu)).rejects.toThrow(
      'ALTER TABLE "public"."orders" REPLICA IDENTITY FULL',
    );
  });

  it('gives an UPDATE without an old row (the key did not change) the new row\'s answer', async () => {
    const keyed = newRelation(message('default', ['region', 'id']));
    expect(await narrowed(keyed, [change('U', undefined, ['1', 'eu', 'b']), change('U', undefined, ['2', 'us', 'b'])])).toEqual([['U', null, '1']]);
  });

  it('leaves the columns not selected out, but refuses to leave out a key column', () => {
    const rel = full();
    applyFilterSettings(rel, eu);
    expect([rel.where, [...rel.excluded!]]).toEqual(["region = 'eu'", [2]]);
    const keyed = newRelation(message('default', ['note']));
    expect(() => applyFilterSettings(keyed, eu)).toThrow('Column note of public.orders is left out by the spec');
  });
});

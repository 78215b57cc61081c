/** The origin filter between the CDC stream and the applier (no loops between two sides), without PostgreSQL. */
import { describe, expect, it } from 'vitest';
import { earlyOriginNames, originFamily, originFilter } from '../../engine/cdc/origin.js';
import type { PgoutputMessage } from '../../engine/cdc/pgoutput.js';
import { reverseReplicationNames } from '../../engine/cutover/reverse.js';

const tuple = ['1'];
const begin: PgoutputMessage = { tag: 'begin', finalLsn: '0/10', commitTime: 0n, xid: 7 };
const commit: PgoutputMessage = { tag: 'commit', flags: 0, commitLsn: '0/10', endLsn: '0/18', commitTime: 0n };
const origin = (name: string): PgoutputMessage => ({ tag: 'origin', originLsn: '0/0', name });
const relation: PgoutputMessage = { tag: 'relation', relationId: 1, schema: 'app', name: 'items', replicaIdentity: 'default', columns: [] };
const changes: PgoutputMessage[] = [
  { tag: 'insert', relationId: 1, newTuple: tuple },
  { tag: 'update', relationId: 1, newTuple: tuple },
  { tag: 'delete', relationId: 1, oldKey: tuple },
  { tag: 'truncate', cascade: false, restartIdentity: false, relationIds: [1] },
  { tag: 'message', transactional: true, lsn: '0/12', prefix: 'p', content: Buffer.alloc(0) },
];

/** The tags a filter lets through for one transaction with `originName` (none: a local transaction). */
function passed(filter: (m: PgoutputMessage) => PgoutputMessage | undefined, originName?: string): string[] {
  const transaction = [begin, ...(originName ? [origin(originName)] : []), relation, ...changes, commit];
  return transaction.flatMap((message) => filter(message)?.tag ?? []);
}

describe('originFilter', () => {
  it('drops the changes of a transaction whose origin is skipped, keeping its begin, commit and relation', () => {
    const filter = originFilter(['fwd', 'fwd_1']);
    expect(passed(filter, 'fwd')).toEqual(['begin', 'origin', 'relation', 'commit']);
    expect(passed(filter, 'fwd_1')).toEqual(['begin', 'origin', 'relation', 'commit']);
  });

  it('applies local transactions, and those of any other origin (a cascade), after a skipped one', () => {
    const filter = originFilter(['fwd']);
    passed(filter, 'fwd');
    const all = ['begin', 'relation', 'insert', 'update', 'delete', 'truncate', 'message', 'commit'];
    expect(passed(filter)).toEqual(all);
    expect(passed(filter, 'other_migration_fwd')).toEqual(['begin', 'origin', ...all.slice(1)]);
  });

  it('passes everything when nothing is skipped', () => {
    expect(passed(originFilter(undefined), 'fwd')).toHaveLength(9);
    expect(passed(originFilter([]), 'fwd')).toHaveLength(9);
  });
});

describe('reverse replication names', () => {
  it('derive from the forward names and stay within 63 bytes, early-apply origins included', () => {
    const long = reverseReplicationNames({ name: 'x'.repeat(200), cdc: {} });
    for (const name of [long.slotName, long.publicationName, ...originFamily(long.forwardOrigin), ...originFamily(long.reverseOrigin)]) {
      expect(Buffer.byteLength(name)).toBeLessThanOrEqual(63);
    }
    expect(reverseReplicationNames({ name: 'Orders', cdc: { publicationName: 'orders_pub' } })).toEqual({
      slotName: 'pgferry_orders_rev',
      publicationName: 'orders_pub_rev',
      forwardOrigin: 'pgferry_orders_fwd',
      reverseOrigin: 'pgferry_orders_rev',
    });
    expect(earlyOriginNames('o')).toEqual(['o_1', 'o_2', 'o_3', 'o_4', 'o_5', 'o_6', 'o_7', 'o_8']);
    expect(new Set(originFamily(long.forwardOrigin)).has(long.reverseOrigin)).toBe(false);
  });
});

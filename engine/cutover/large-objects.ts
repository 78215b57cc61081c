/**
 * Large objects at cutover. Logical decoding carries no large-object change (pg_largeobject is
 * a catalog), so once the stream has drained, every large object is compared (size, MD5 of its
 * bytes, owner, grants, comment: engine/compare/large-objects.ts) and what differs is put
 * right: created, copied again or unlinked, in one target transaction.
 */
import type pg from 'pg';
import { diffLargeObjects, type LargeObjectDifference } from '../compare/large-objects.js';
import { CANONICAL_SESSION_SQL } from '../connect/index.js';
import { copyLargeObject, largeObjectMeta, targetRoles } from '../load/large-objects.js';
import { withTransaction } from '../sql.js';

export interface LargeObjectResync {
  created: string[];
  changed: string[];
  unlinked: string[];
  bytes: number;
}

const BATCH = 500;

/** Makes the target's large objects equal the source's; returns the OIDs it created, copied again and unlinked. */
export async function resyncLargeObjects(source: pg.Client, target: pg.Client): Promise<LargeObjectResync> {
  await Promise.all([source.query(CANONICAL_SESSION_SQL), target.query(CANONICAL_SESSION_SQL)]);
  const result: LargeObjectResync = { created: [], changed: [], unlinked: [], bytes: 0 };
  await withTransaction(
    source,
    () =>
      withTransaction(target, async () => {
        const roles = await targetRoles(target);
        const differences: LargeObjectDifference[] = [];
        await diffLargeObjects(source, target, roles, (difference) => differences.push(difference));
        for (const { oid, kind } of differences) (kind === 'missing' ? result.created : kind === 'different' ? result.changed : result.unlinked).push(oid);
        if (result.unlinked.length) await target.query('SELECT lo_unlink(oid) FROM pg_largeobject_metadata WHERE oid::int8 = ANY($1::int8[])', [result.unlinked]);
        const copies = [...result.created, ...result.changed];
        for (let i = 0; i < copies.length; i += BATCH) {
          for (const meta of await largeObjectMeta(source, copies.slice(i, i + BATCH))) {
            result.bytes += await copyLargeObject(source, target, meta, roles);
          }
        }
      }),
    'BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY',
  );
  return result;
}

/** One line for the events and the report: what the resync did. */
export function describeResync({ created, changed, unlinked, bytes }: LargeObjectResync): string {
  const list = (oids: string[]) => (oids.length > 20 ? `${oids.slice(0, 20).join(', ')}, … ${oids.length - 20} more` : oids.join(', '));
  const parts = [
    ...(created.length ? [`${created.length} created (${list(created)})`] : []),
    ...(changed.length ? [`${changed.length} copied again (${list(changed)})`] : []),
    ...(unlinked.length ? [`${unlinked.length} unlinked (${list(unlinked)})`] : []),
  ];
  return parts.length ? `large objects resynced at cutover: ${parts.join(', ')}; ${bytes} bytes copied` : 'large objects at cutover: all equal the source';
}

/**
 * Large objects compared one by one, source against target: size and an MD5 of their bytes
 * (read in chunks on each server, only the hashes cross the wire), owner, grants and comment.
 * Both sides are read in OID order and merged, so neither list is held whole. The resync at
 * cutover (engine/cutover/large-objects.ts) copies what this finds different.
 */
import { createHash } from 'node:crypto';
import type pg from 'pg';
import type { RowDifference, TableComparison } from '../control/index.js';
import { LARGE_OBJECT_CHUNK, LARGE_OBJECTS, targetRoles, type TargetRoles } from '../load/large-objects.js';
import { withComparedSides } from './index.js';

/** What is compared of one large object. */
export interface LargeObjectDigest {
  oid: string;
  size: number;
  hash: string;
  owner: string;
  /** Grants as `grantee=privilege[*]` sorted; null for the default ACL. */
  grants: string[] | null;
  comment: string | null;
}

const BATCH = 500;

const BATCH_SQL = `
SELECT m.oid::int8::text AS oid, pg_get_userbyid(m.lomowner) AS owner,
       CASE WHEN m.lomacl IS NOT NULL THEN
         ARRAY(SELECT format('%s=%s%s', CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE pg_get_userbyid(a.grantee) END, a.privilege_type,
                             CASE WHEN a.is_grantable THEN '*' ELSE '' END)
                 FROM aclexplode(m.lomacl) a) END AS grants,
       obj_description(m.oid, 'pg_largeobject') AS comment, md5(f.data) AS first_hash, length(f.data) AS first_size
  FROM (SELECT oid, lomowner, lomacl FROM pg_largeobject_metadata WHERE $1::int8 IS NULL OR oid::int8 > $1 ORDER BY oid LIMIT ${BATCH}) m,
       LATERAL (SELECT lo_get(m.oid, 0, $2) AS data) f
 ORDER BY m.oid`;

interface DigestRow {
  oid: string;
  owner: string;
  grants: string[] | null;
  comment: string | null;
  first_hash: string;
  first_size: number;
}

/** The digests of a side's large objects in OID order, a batch at a time. */
export async function* largeObjectDigests(client: pg.Client): AsyncGenerator<LargeObjectDigest> {
  let after: string | null = null;
  for (;;) {
    const rows: DigestRow[] = (await client.query<DigestRow>(BATCH_SQL, [after, LARGE_OBJECT_CHUNK])).rows;
    for (const row of rows) {
      const { size, hash } = row.first_size < LARGE_OBJECT_CHUNK ? { size: row.first_size, hash: row.first_hash } : await wholeHash(client, row.oid, row.first_hash);
      yield { oid: row.oid, size, hash, owner: row.owner, grants: row.grants ? [...row.grants].sort() : null, comment: row.comment };
    }
    if (rows.length < BATCH) return;
    after = rows.at(-1)!.oid;
  }
}

/** A large object over one chunk: the MD5 of its chunks' MD5s, read chunk by chunk. */
async function wholeHash(client: pg.Client, oid: string, firstHash: string): Promise<{ size: number; hash: string }> {
  const hashes = [firstHash];
  let size = LARGE_OBJECT_CHUNK;
  for (;;) {
    const { rows } = await client.query<{ hash: string; size: number }>(
      'SELECT md5(d) AS hash, length(d) AS size FROM (SELECT lo_get($1::int8::oid, $2, $3) AS d) x',
      [oid, size, LARGE_OBJECT_CHUNK],
    );
    const chunk = rows[0]!;
    if (chunk.size === 0) break;
    hashes.push(chunk.hash);
    size += chunk.size;
    if (chunk.size < LARGE_OBJECT_CHUNK) break;
  }
  return { size, hash: createHash('md5').update(hashes.join('')).digest('hex') };
}

/** A large object that differs: missing (only on the source), extra (only on the target) or different. */
export interface LargeObjectDifference {
  oid: string;
  kind: RowDifference['kind'];
}

/**
 * What the target should hold of a source large object: its owner and grants as the copy gives
 * them (a role the target lacks owns nothing there and is granted nothing; see copyLargeObject).
 */
function expected(source: LargeObjectDigest, { roles, owners, user }: TargetRoles): LargeObjectDigest {
  const owner = owners.has(source.owner) ? source.owner : user;
  const grants = source.grants?.filter((g) => g.startsWith('PUBLIC=') || roles.has(g.slice(0, g.lastIndexOf('=')))) ?? null;
  return { ...source, owner, grants };
}

const same = (a: LargeObjectDigest, b: LargeObjectDigest) =>
  a.size === b.size && a.hash === b.hash && a.owner === b.owner && a.comment === b.comment && JSON.stringify(a.grants) === JSON.stringify(b.grants);

/** Both sides' large objects merged by OID; counts every object and hands each difference to `onDifference`. */
export async function diffLargeObjects(
  source: pg.Client,
  target: pg.Client,
  roles: TargetRoles,
  onDifference: (difference: LargeObjectDifference) => void,
): Promise<{ sourceObjects: number; targetObjects: number }> {
  const [sources, targets] = [largeObjectDigests(source), largeObjectDigests(target)];
  let [s, t] = await Promise.all([sources.next(), targets.next()]);
  let sourceObjects = 0;
  let targetObjects = 0;
  while (!s.done || !t.done) {
    const order = s.done ? 1 : t.done ? -1 : Math.sign(Number(s.value.oid) - Number(t.value.oid));
    if (order <= 0) sourceObjects++;
    if (order >= 0) targetObjects++;
    if (order < 0) onDifference({ oid: s.value!.oid, kind: 'missing' });
    else if (order > 0) onDifference({ oid: t.value!.oid, kind: 'extra' });
    else if (!same(expected(s.value!, roles), t.value!)) onDifference({ oid: s.value!.oid, kind: 'different' });
    [s, t] = await Promise.all([order <= 0 ? sources.next() : s, order >= 0 ? targets.next() : t]);
  }
  return { sourceObjects, targetObjects };
}

/**
 * Compares every large object of both sides (the source at `snapshot` when given); undefined
 * when neither side has any.
 */
export async function compareLargeObjects(
  connectSource: () => Promise<pg.Client>,
  connectTarget: () => Promise<pg.Client>,
  { snapshot, maxDifferences }: { snapshot?: string; maxDifferences: number },
): Promise<TableComparison | undefined> {
  return withComparedSides(connectSource, connectTarget, snapshot, async (source, target) => {
    const differences: RowDifference[] = [];
    let found = 0;
    const counts = await diffLargeObjects(source, target, await targetRoles(target), ({ oid, kind }) => {
      found++;
      if (differences.length < maxDifferences) differences.push({ key: { oid }, kind });
    });
    if (counts.sourceObjects === 0 && counts.targetObjects === 0) return undefined;
    return {
      source: LARGE_OBJECTS,
      method: 'checksum',
      status: found ? 'mismatch' : 'match',
      sourceRows: counts.sourceObjects,
      targetRows: counts.targetObjects,
      ranges: 1,
      mismatchedRanges: found ? 1 : 0,
      differences,
      ...(found > differences.length ? { note: `only the first ${maxDifferences} differences are listed` } : {}),
    };
  });
}

/**
 * Large objects in the full load. They are not in any schema, so they travel as work units of
 * their own: the unit's source and target are `pg_catalog.pg_largeobject` and its page range
 * `[fromPage, toPage)` is a range of large-object OIDs. A copy worker copies a unit's large
 * objects at the load's snapshot (lo_get reads as of the transaction's snapshot), keeping each
 * one's OID, in chunks so that no whole value is held in memory, with its owner (where the role
 * exists on the target), its grants and its comment, all in the unit's target transaction.
 */
import type pg from 'pg';
import type { TableRef } from '../catalog/tables.js';
import type { PlannedTable, WorkUnit } from '../control/index.js';
import { quoteIdent } from '../sql.js';
import type { SchemaObjectResult } from '../control/index.js';

/** The pseudo-table large-object units are planned, reported and compared under. */
export const LARGE_OBJECTS: TableRef = { schema: 'pg_catalog', name: 'pg_largeobject' };

export const isLargeObjects = (ref: TableRef): boolean => ref.schema === LARGE_OBJECTS.schema && ref.name === LARGE_OBJECTS.name;

/** Bytes read or written per round trip. */
export const LARGE_OBJECT_CHUNK = 1024 * 1024;

/** How many large objects are listed (with their metadata) per query. */
const LIST_BATCH = 500;

export interface LargeObjectPlan {
  units: Omit<WorkUnit, 'id'>[];
  table?: PlannedTable;
}

/**
 * The units of the source's large objects: one per `splitLargerThan` bytes of pg_largeobject,
 * each a contiguous OID range, the first from 0 and the last open-ended, so that a large object
 * created between this plan and the snapshot still falls into one of them. None without any.
 */
export async function planLargeObjects(source: pg.Client, splitLargerThan: number): Promise<LargeObjectPlan> {
  const { rows } = await source.query<{ count: number; bytes: number }>(
    `SELECT count(*)::int AS count, pg_relation_size('pg_catalog.pg_largeobject')::float8 AS bytes FROM pg_largeobject_metadata`,
  );
  const { count, bytes } = rows[0]!;
  if (count === 0) return { units: [] };
  const pieces = Math.max(1, Math.min(count, Math.ceil(bytes / Math.max(1, splitLargerThan))));
  const { rows: starts } = await source.query<{ first: string }>(
    `SELECT min(oid::int8)::text AS first
       FROM (SELECT oid, ntile($1) OVER (ORDER BY oid) AS piece FROM pg_largeobject_metadata) p
      GROUP BY piece ORDER BY piece`,
    [pieces],
  );
  const bounds = starts.map((s, i) => (i === 0 ? 0 : Number(s.first)));
  const units = bounds.map((from, i) => ({
    source: LARGE_OBJECTS,
    target: LARGE_OBJECTS,
    columns: [],
    fromPage: from,
    toPage: bounds[i + 1],
    binaryFormat: false,
    freeze: false,
    estimatedBytes: Math.round(bytes / bounds.length),
  }));
  return {
    units,
    table: { source: LARGE_OBJECTS, target: LARGE_OBJECTS, estimatedRows: count, estimatedBytes: bytes, units: units.length },
  };
}

/** A large object's metadata on the source. */
export interface LargeObjectMeta {
  oid: string;
  owner: string;
  /** The explicit grants in the ACL's order (granted in it, they give the same ACL); null when the ACL is the default (the owner's). */
  grants: { grantee: string | null; privilege: string; grantable: boolean }[] | null;
  comment: string | null;
}

const META_COLUMNS = `m.oid::int8::text AS oid, pg_get_userbyid(m.lomowner) AS owner,
       CASE WHEN m.lomacl IS NOT NULL THEN
         (SELECT coalesce(json_agg(json_build_object('grantee', CASE WHEN a.grantee = 0 THEN NULL ELSE pg_get_userbyid(a.grantee) END,
                                                     'privilege', a.privilege_type, 'grantable', a.is_grantable)
                                   ORDER BY a.ord), '[]')
            FROM aclexplode(m.lomacl) WITH ORDINALITY a(grantor, grantee, privilege_type, is_grantable, ord)) END AS grants,
       obj_description(m.oid, 'pg_largeobject') AS comment`;

/** The metadata of the large objects with `from <= oid < to` (to absent: no upper bound) and OID above `after`, by OID. */
async function listBatch(source: pg.Client, from: number, to: number | undefined, after: string | undefined): Promise<LargeObjectMeta[]> {
  const { rows } = await source.query<LargeObjectMeta>(
    `SELECT ${META_COLUMNS} FROM pg_largeobject_metadata m
      WHERE m.oid::int8 >= $1 AND ($2::int8 IS NULL OR m.oid::int8 < $2) AND ($3::int8 IS NULL OR m.oid::int8 > $3)
      ORDER BY m.oid LIMIT ${LIST_BATCH}`,
    [from, to ?? null, after ?? null],
  );
  return rows;
}

/** The metadata of the given large objects on the source. */
export async function largeObjectMeta(source: pg.Client, oids: string[]): Promise<LargeObjectMeta[]> {
  const { rows } = await source.query<LargeObjectMeta>(
    `SELECT ${META_COLUMNS} FROM pg_largeobject_metadata m WHERE m.oid::int8 = ANY($1::int8[]) ORDER BY m.oid`,
    [oids],
  );
  return rows;
}

/** What the target needs to know to give a large object its owner and grants. */
export interface TargetRoles {
  /** Roles that exist on the target (grants go to these). */
  roles: Set<string>;
  /** Roles the target user may make owners: every role for a superuser, otherwise the roles it is a member of. */
  owners: Set<string>;
  /** The user pgferry connects to the target as (owner of what it creates). */
  user: string;
}

export async function targetRoles(target: pg.Client): Promise<TargetRoles> {
  const { rows } = await target.query<{ rolname: string; me: boolean; may_own: boolean }>(
    `SELECT rolname, rolname = current_user AS me,
            (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) OR pg_has_role(current_user, oid, 'MEMBER') AS may_own
       FROM pg_roles`,
  );
  return { roles: new Set(rows.map((r) => r.rolname)), owners: new Set(rows.filter((r) => r.may_own).map((r) => r.rolname)), user: rows.find((r) => r.me)!.rolname };
}

const oidText = (oid: string): string => {
  if (!/^\d+$/.test(oid)) throw new Error(`not a large object OID: ${oid}`);
  return oid;
};

/**
 * Copies one large object (source → target, same OID), replacing one of that OID on the target.
 * Reads the source in the caller's transaction (at its snapshot); returns the bytes copied.
 */
export async function copyLargeObject(
  source: pg.Client,
  target: pg.Client,
  meta: LargeObjectMeta,
  roles: TargetRoles,
  onBytes: (bytes: number) => void | Promise<void> = () => undefined,
): Promise<number> {
  const oid = oidText(meta.oid);
  await target.query('SELECT lo_unlink(oid) FROM pg_largeobject_metadata WHERE oid = $1::int8::oid', [oid]);
  await target.query('SELECT lo_create($1::int8::oid)', [oid]);
  let offset = 0;
  for (;;) {
    const { rows } = await source.query<{ data: Buffer }>('SELECT lo_get($1::int8::oid, $2, $3) AS data', [oid, offset, LARGE_OBJECT_CHUNK]);
    const data = rows[0]!.data;
    if (data.length > 0) await target.query('SELECT lo_put($1::int8::oid, $2, $3::bytea)', [oid, offset, data]);
    offset += data.length;
    await onBytes(data.length);
    if (data.length < LARGE_OBJECT_CHUNK) break;
  }
  await applyMetadata(target, meta, roles);
  return offset;
}

/** Owner (where the role exists on the target and the target user may give it objects), grants (to roles that exist) and comment of a large object already on the target. */
export async function applyMetadata(target: pg.Client, meta: LargeObjectMeta, { roles, owners, user }: TargetRoles): Promise<void> {
  const object = `LARGE OBJECT ${oidText(meta.oid)}`;
  const owner = owners.has(meta.owner) ? meta.owner : user;
  if (owner !== user) await target.query(`ALTER ${object} OWNER TO ${quoteIdent(owner)}`);
  if (meta.grants) {
    await target.query(`REVOKE ALL ON ${object} FROM PUBLIC, ${quoteIdent(owner)}`);
    for (const grant of meta.grants) {
      if (grant.grantee !== null && !roles.has(grant.grantee)) continue;
      if (!/^(SELECT|UPDATE)$/.test(grant.privilege)) continue;
      const grantee = grant.grantee === null ? 'PUBLIC' : quoteIdent(grant.grantee);
      await target.query(`GRANT ${grant.privilege} ON ${object} TO ${grantee}${grant.grantable ? ' WITH GRANT OPTION' : ''}`);
    }
  }
  if (meta.comment === null) return;
  const { rows } = await target.query<{ sql: string }>(`SELECT format('COMMENT ON LARGE OBJECT %s IS %L', $1::int8::oid, $2::text) AS sql`, [
    meta.oid,
    meta.comment,
  ]);
  await target.query(rows[0]!.sql);
}

/**
 * Copies the large objects of a unit's OID range. The source session is in the unit's snapshot
 * transaction, the target session in the unit's transaction. `onBytes` sees the bytes so far;
 * `pace` (flow control) is told every large object (a row) and chunk copied, and holds the copy back.
 */
export async function copyLargeObjectUnit(
  source: pg.Client,
  target: pg.Client,
  unit: Pick<WorkUnit, 'fromPage' | 'toPage'>,
  onBytes: (bytes: number) => void,
  pace?: (rows: number, bytes: number) => Promise<void>,
): Promise<{ rows: number; bytes: number }> {
  const roles = await targetRoles(target);
  let rows = 0;
  let bytes = 0;
  const copied = async (chunk: number) => {
    onBytes((bytes += chunk));
    await pace?.(0, chunk);
  };
  let after: string | undefined;
  for (;;) {
    const batch = await listBatch(source, unit.fromPage ?? 0, unit.toPage, after);
    for (const meta of batch) {
      await copyLargeObject(source, target, meta, roles, copied);
      rows++;
      await pace?.(1, 0);
    }
    if (batch.length < LIST_BATCH) return { rows, bytes };
    after = batch.at(-1)!.oid;
  }
}

/**
 * The roles the source's large objects are owned by or granted to that the target lacks: those
 * large objects belong to the target user, and grants to a missing role are left out.
 */
export async function largeObjectOwnersMissing(source: pg.Client, target: pg.Client): Promise<SchemaObjectResult[]> {
  const { rows } = await source.query<{ role: string; owned: number; granted: number }>(
    `SELECT r.role, count(*) FILTER (WHERE r.owns)::int AS owned, count(*) FILTER (WHERE NOT r.owns)::int AS granted
       FROM pg_largeobject_metadata m,
            LATERAL (SELECT pg_get_userbyid(m.lomowner) AS role, true AS owns
                     UNION SELECT pg_get_userbyid(a.grantee), false FROM aclexplode(m.lomacl) a WHERE a.grantee <> 0) r
      GROUP BY r.role ORDER BY r.role`,
  );
  const { roles, owners, user } = await targetRoles(target);
  return rows
    .filter((r) => !owners.has(r.role) && (r.owned > 0 || !roles.has(r.role)))
    .map((r) => {
      const cause = roles.has(r.role) ? `${user} may not give objects to role ${r.role} on the target (it is not a member of it)` : `role ${r.role} does not exist on the target`;
      const what = [
        ...(r.owned ? [`the ${r.owned} large object(s) it owns belong to ${user}`] : []),
        ...(r.granted && !roles.has(r.role) ? [`its grants on ${r.granted} large object(s) are left out`] : []),
      ];
      return { kind: 'large object role', identity: r.role, status: 'not_migrated', detail: `${cause}: ${what.join('; ')}` };
    });
}

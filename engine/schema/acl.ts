/**
 * ACL arithmetic shared by object privileges and default privileges: pg_dump's approach. What
 * the source's ACL adds to or takes from its owner's default ACL is applied to the target's
 * default ACL of the owner there; GRANT/REVOKE then turn the target's current ACL into that.
 * The owner is compared by role, not by name, since it may differ between the two sides.
 */
import { quoteIdent } from '../sql.js';

/** [grantee (null: PUBLIC), privilege, grantable, grantor] */
export type AclItem = [string | null, string, boolean, string];

/** SQL: an aclitem[] expression as a JSON array of AclItems. */
export const ACL_ITEMS = (acl: string) =>
  `SELECT coalesce(jsonb_agg(jsonb_build_array(CASE WHEN x.grantee = 0 THEN NULL ELSE pg_get_userbyid(x.grantee) END, x.privilege_type,
                                                x.is_grantable, pg_get_userbyid(x.grantor))), '[]')
     FROM aclexplode(${acl}) x`;

export interface Acl {
  owner: string;
  acl: AclItem[];
  baseline: AclItem[];
}

/** Grantees that exist on the target; the others collect the objects whose privileges they did not get. */
export interface Grantees {
  exists: (role: string) => boolean;
  missing: Map<string, Set<string>>;
}

const OWNER = '\u0000owner';
type Grantee = string | null;
/** By JSON [grantee, privilege, grantor] (the owner as OWNER): grantable. */
type Items = Map<string, boolean>;

/** Without `grantors`, every privilege counts as granted by the owner. */
function items(list: AclItem[], owner: string, grantors: boolean): Items {
  const map: Items = new Map();
  for (const [grantee, privilege, grantable, grantor] of list) {
    const key = JSON.stringify([grantee === owner ? OWNER : grantee, privilege, grantors && grantor !== owner ? grantor : OWNER]);
    map.set(key, (map.get(key) ?? false) || grantable);
  }
  return map;
}

function add<K>(groups: Map<string, { key: K; privileges: string[] }>, key: K, privilege: string) {
  const id = JSON.stringify(key);
  if (!groups.has(id)) groups.set(id, { key, privileges: [] });
  groups.get(id)!.privileges.push(privilege);
}

/** The desired items on the target: its owner's default, changed as the source's ACL changes its own; roles it lacks left out. */
function desiredItems(source: Acl, target: Acl, grantees: Grantees, label: string, grantors: boolean): Items {
  const sourceAcl = items(source.acl, source.owner, grantors);
  const sourceBaseline = items(source.baseline, source.owner, grantors);
  const desired = items(target.baseline, target.owner, grantors);
  for (const key of sourceBaseline.keys()) if (!sourceAcl.has(key)) desired.delete(key);
  for (const [key, grantable] of sourceAcl) if (sourceBaseline.get(key) !== grantable) desired.set(key, grantable);
  for (const key of [...desired.keys()]) {
    const [grantee, , grantor] = JSON.parse(key) as [Grantee, string, string];
    const absent = [grantee, grantor].filter((r): r is string => r !== null && r !== OWNER && !grantees.exists(r));
    if (!absent.length) continue;
    desired.delete(key);
    for (const role of absent) {
      if (!grantees.missing.has(role)) grantees.missing.set(role, new Set());
      grantees.missing.get(role)!.add(label);
    }
  }
  return desired;
}

/**
 * The GRANT/REVOKE statements that make `target.acl` what `source.acl` is relative to its
 * baseline. `on` is what follows ON (with a column, privileges are per column); `label` names
 * the object for the missing-grantee report. With `keepOwner`, what would be revoked from the
 * owner is returned apart, in `deferred`, instead. With `grantors`, a privilege granted by
 * another role than the owner is granted by that role (SET ROLE, which a superuser may do).
 */
export function aclStatements(
  source: Acl,
  target: Acl,
  on: { object: string; column?: string },
  grantees: Grantees,
  label: string,
  { keepOwner = false, grantors = false } = {},
): { statements: string[]; deferred: string[] } {
  const desired = desiredItems(source, target, grantees, label, grantors);
  const current = items(target.acl, target.owner, grantors);
  const revoke = new Map<string, { key: [Grantee, string]; privileges: string[] }>();
  const revokeOption = new Map<string, { key: [Grantee, string]; privileges: string[] }>();
  const grant = new Map<string, { key: [Grantee, boolean, string]; privileges: string[] }>();
  for (const [key, grantable] of current) {
    const [grantee, privilege, grantor] = JSON.parse(key) as [Grantee, string, string];
    if (!desired.has(key)) add(revoke, [grantee, grantor], privilege);
    else if (grantable && !desired.get(key)) add(revokeOption, [grantee, grantor], privilege);
  }
  for (const [key, grantable] of desired) {
    const [grantee, privilege, grantor] = JSON.parse(key) as [Grantee, string, string];
    if (!current.has(key) || (grantable && !current.get(key))) add(grant, [grantee, grantable, grantor], privilege);
  }
  const who = (grantee: Grantee) => (grantee === null ? 'PUBLIC' : quoteIdent(grantee === OWNER ? target.owner : grantee));
  const list = (privileges: string[]) => privileges.map((p) => (on.column ? `${p} (${on.column})` : p)).join(', ');
  // One statement string: if the GRANT fails, its implicit transaction takes the SET ROLE back too.
  const as = (grantor: string, sql: string) => (grantor === OWNER ? sql : `SET ROLE ${quoteIdent(grantor)}; ${sql}; RESET ROLE`);
  const revokes = [...revoke.values()].map(({ key: [grantee, grantor], privileges }) => ({
    owner: grantee === OWNER,
    sql: as(grantor, `REVOKE ${list(privileges)} ON ${on.object} FROM ${who(grantee)}`),
  }));
  // The owner's grants first: another grantor needs its grant option before it grants.
  const grants = [...grant.values()].sort((a, b) => Number(a.key[2] !== OWNER) - Number(b.key[2] !== OWNER));
  return {
    statements: [
      ...revokes.filter((r) => !(keepOwner && r.owner)).map((r) => r.sql),
      ...[...revokeOption.values()].map(({ key: [grantee, grantor], privileges }) =>
        as(grantor, `REVOKE GRANT OPTION FOR ${list(privileges)} ON ${on.object} FROM ${who(grantee)}`),
      ),
      ...grants.map(({ key: [grantee, grantable, grantor], privileges }) =>
        as(grantor, `GRANT ${list(privileges)} ON ${on.object} TO ${who(grantee)}${grantable ? ' WITH GRANT OPTION' : ''}`),
      ),
    ],
    deferred: revokes.filter((r) => keepOwner && r.owner).map((r) => r.sql),
  };
}

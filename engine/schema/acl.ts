/**
 * ACL arithmetic shared by object privileges and default privileges: pg_dump's approach. What
 * the source's ACL adds to or takes from its owner's default ACL is applied to the target's
 * default ACL of the owner there; GRANT/REVOKE then turn the target's current ACL into that.
 * The owner is compared by role, not by name, since it may differ between the two sides.
 */
import { quoteIdent } from '../sql.js';

/** [grantee (null: PUBLIC), privilege, grantable] */
export type AclItem = [string | null, string, boolean];

/** SQL: an aclitem[] expression as a JSON array of AclItems. */
export const ACL_ITEMS = (acl: string) =>
  `SELECT coalesce(jsonb_agg(jsonb_build_array(CASE WHEN x.grantee = 0 THEN NULL ELSE pg_get_userbyid(x.grantee) END, x.privilege_type, x.is_grantable)), '[]')
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
type Items = Map<string, boolean>;

function items(list: AclItem[], owner: string): Items {
  return new Map(list.map(([grantee, privilege, grantable]) => [JSON.stringify([grantee === owner ? OWNER : grantee, privilege]), grantable]));
}

function add<K>(groups: Map<string, { key: K; privileges: string[] }>, key: K, privilege: string) {
  const id = JSON.stringify(key);
  if (!groups.has(id)) groups.set(id, { key, privileges: [] });
  groups.get(id)!.privileges.push(privilege);
}

/**
 * The GRANT/REVOKE statements that make `target.acl` what `source.acl` is relative to its
 * baseline. `on` is what follows ON (with a column, privileges are per column); `label` names
 * the object for the missing-grantee report. With `keepOwner`, what would be revoked from the
 * owner is returned apart, in `deferred`, instead.
 */
export function aclStatements(
  source: Acl,
  target: Acl,
  on: { object: string; column?: string },
  grantees: Grantees,
  label: string,
  { keepOwner = false } = {},
): { statements: string[]; deferred: string[] } {
  const sourceAcl = items(source.acl, source.owner);
  const sourceBaseline = items(source.baseline, source.owner);
  const desired = items(target.baseline, target.owner);
  for (const key of sourceBaseline.keys()) if (!sourceAcl.has(key)) desired.delete(key);
  for (const [key, grantable] of sourceAcl) if (sourceBaseline.get(key) !== grantable) desired.set(key, grantable);
  for (const key of [...desired.keys()]) {
    const [grantee] = JSON.parse(key) as [string | null];
    if (grantee === null || grantee === OWNER || grantees.exists(grantee)) continue;
    desired.delete(key);
    if (!grantees.missing.has(grantee)) grantees.missing.set(grantee, new Set());
    grantees.missing.get(grantee)!.add(label);
  }
  const current = items(target.acl, target.owner);
  type Grantee = string | null;
  const revoke = new Map<string, { key: Grantee; privileges: string[] }>();
  const revokeOption = new Map<string, { key: Grantee; privileges: string[] }>();
  const grant = new Map<string, { key: [Grantee, boolean]; privileges: string[] }>();
  for (const [key, grantable] of current) {
    const [grantee, privilege] = JSON.parse(key) as [Grantee, string];
    if (!desired.has(key)) add(revoke, grantee, privilege);
    else if (grantable && !desired.get(key)) add(revokeOption, grantee, privilege);
  }
  for (const [key, grantable] of desired) {
    const [grantee, privilege] = JSON.parse(key) as [Grantee, string];
    if (!current.has(key) || (grantable && !current.get(key))) add(grant, [grantee, grantable], privilege);
  }
  const who = (grantee: Grantee) => (grantee === null ? 'PUBLIC' : quoteIdent(grantee === OWNER ? target.owner : grantee));
  const list = (privileges: string[]) => privileges.map((p) => (on.column ? `${p} (${on.column})` : p)).join(', ');
  const revokes = [...revoke.values()].map(({ key, privileges }) => ({ owner: key === OWNER, sql: `REVOKE ${list(privileges)} ON ${on.object} FROM ${who(key)}` }));
  return {
    statements: [
      ...revokes.filter((r) => !(keepOwner && r.owner)).map((r) => r.sql),
      ...[...revokeOption.values()].map(({ key, privileges }) => `REVOKE GRANT OPTION FOR ${list(privileges)} ON ${on.object} FROM ${who(key)}`),
      ...[...grant.values()].map(
        ({ key: [grantee, grantable], privileges }) => `GRANT ${list(privileges)} ON ${on.object} TO ${who(grantee)}${grantable ? ' WITH GRANT OPTION' : ''}`,
      ),
    ],
    deferred: revokes.filter((r) => keepOwner && r.owner).map((r) => r.sql),
  };
}

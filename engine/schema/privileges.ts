/**
 * Ownership and privileges, last in post-data. Owners: the source's where the role exists on the
 * target and the target user may hand the object over without losing the access the load, the
 * CDC applier and the comparison need. Privileges: pg_dump's way — what the source's ACL adds
 * to or takes from the default ACL of its owner (acldefault) is applied to the target's default
 * ACL of the object's owner there, then GRANT/REVOKE make the target's ACL that. Objects that
 * existed before the migration (the public schema, whose ACL differs between 13 and 15+) end with
 * the source's ACL too. Default privileges likewise (ALTER DEFAULT PRIVILEGES).
 */
import type pg from 'pg';
import { quoteIdent } from '../sql.js';
import type { PostDataRun } from './postdata.js';
import { rolesOnTarget, SELECTED, targetUser, type TargetUser } from './roles.js';
import { aclStatements, ACL_ITEMS, type AclItem, type Grantees } from './acl.js';
import { setDefaultPrivileges, type DefaultAclRow } from './default-privileges.js';

export { readDefaultPrivileges, type DefaultAclRow } from './default-privileges.js';

export interface OwnedObject {
  category: 'rel' | 'col' | 'proc' | 'type' | 'schema' | 'other';
  /** ALTER <keyword> <identity> OWNER TO. */
  keyword: string | null;
  identity: string;
  /** GRANT … ON <grant_on>; null: the kind has no privileges. */
  grant_on: string | null;
  column: string | null;
  owner: string;
  change_owner: boolean;
  /** The source's ACL and its owner's default ACL there, as [grantee (null: PUBLIC), privilege, grantable]. */
  acl: AclItem[] | null;
  baseline: AclItem[] | null;
}

const ITEMS = (acl: string) => `(${ACL_ITEMS(acl)})`;
/** The object's ACL (NULL: its owner's default) and its owner's default ACL. */
const ACL_OF = (acl: string, type: string, owner: string) =>
  `${ITEMS(`coalesce(${acl}, acldefault(${type}, ${owner}))`)}, ${ITEMS(`acldefault(${type}, ${owner})`)}`;
/** Not an object whose owner follows another's (an owned sequence, an array type, a range's constructor); partitions are their own. */
const OWNER_OF_ITS_OWN = (classid: string, oid: string) =>
  `NOT EXISTS (SELECT 1 FROM pg_depend dd WHERE dd.classid = '${classid}'::regclass AND dd.objid = ${oid} AND dd.deptype IN ('a', 'i'))`;

/** Owned objects of kinds with no privileges: [keyword, catalog, owner column, namespace column, identity expression]. */
const OWNED_ONLY: [string, string, string, string, string][] = [
  ['COLLATION', 'pg_collation', 'collowner', 'collnamespace', `format('%I.%I', n.nspname, x.collname)`],
  ['CONVERSION', 'pg_conversion', 'conowner', 'connamespace', `format('%I.%I', n.nspname, x.conname)`],
  ['STATISTICS', 'pg_statistic_ext', 'stxowner', 'stxnamespace', `format('%I.%I', n.nspname, x.stxname)`],
  [
    'OPERATOR',
    'pg_operator',
    'oprowner',
    'oprnamespace',
    `format('%I.%s(%s, %s)', n.nspname, x.oprname, coalesce(format_type(nullif(x.oprleft, 0), NULL), 'NONE'), coalesce(format_type(nullif(x.oprright, 0), NULL), 'NONE'))`,
  ],
  ['OPERATOR CLASS', 'pg_opclass', 'opcowner', 'opcnamespace', `format('%I.%I USING %I', n.nspname, x.opcname, (SELECT amname FROM pg_am WHERE oid = x.opcmethod))`],
  ['OPERATOR FAMILY', 'pg_opfamily', 'opfowner', 'opfnamespace', `format('%I.%I USING %I', n.nspname, x.opfname, (SELECT amname FROM pg_am WHERE oid = x.opfmethod))`],
  ['TEXT SEARCH CONFIGURATION', 'pg_ts_config', 'cfgowner', 'cfgnamespace', `format('%I.%I', n.nspname, x.cfgname)`],
  ['TEXT SEARCH DICTIONARY', 'pg_ts_dict', 'dictowner', 'dictnamespace', `format('%I.%I', n.nspname, x.dictname)`],
];

/** Every owned object of the selected schemas, with its ACL (extension members excepted: the extension creates them). */
export async function readOwnedObjects(source: pg.Client, schemas: string[], { allColumns = false } = {}): Promise<OwnedObject[]> {
  const rel = `format('%I.%I', n.nspname, c.relname)`;
  const routine = `format('%I.%I(%s)', n.nspname, p.proname, oidvectortypes(p.proargtypes))`;
  const type = `format('%I.%I', n.nspname, t.typname)`;
  const others = OWNED_ONLY.map(
    ([keyword, catalog, owner, namespace, identity]) =>
      `SELECT 'other', '${keyword}', ${identity}, NULL, NULL, pg_get_userbyid(x.${owner}), true, NULL::jsonb, NULL::jsonb, '${catalog}'::regclass, x.oid
         FROM ${catalog} x JOIN pg_namespace n ON n.oid = x.${namespace} WHERE n.oid IN (SELECT oid FROM sel)`,
  );
  const { rows } = await source.query<OwnedObject>(
    `WITH ${SELECTED},
     objects(category, keyword, identity, grant_on, "column", owner, change_owner, acl, baseline, classid, objid) AS (
       SELECT 'rel', CASE c.relkind WHEN 'v' THEN 'VIEW' WHEN 'm' THEN 'MATERIALIZED VIEW' WHEN 'S' THEN 'SEQUENCE' ELSE 'TABLE' END,
              ${rel}, CASE c.relkind WHEN 'S' THEN 'SEQUENCE ' ELSE 'TABLE ' END || ${rel}, NULL, pg_get_userbyid(c.relowner),
              c.relkind <> 'S' OR ${OWNER_OF_ITS_OWN('pg_class', 'c.oid')}, ${ACL_OF('c.relacl', `CASE c.relkind WHEN 'S' THEN 's' ELSE 'r' END::"char"`, 'c.relowner')},
              'pg_class'::regclass, c.oid
         FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.oid IN (SELECT oid FROM sel) AND c.relkind IN ('r', 'p', 'v', 'm', 'S')
       UNION ALL
       SELECT 'col', NULL, ${rel} || '.' || quote_ident(a.attname), 'TABLE ' || ${rel}, a.attname, pg_get_userbyid(c.relowner), false,
              ${ITEMS('a.attacl')}, '[]'::jsonb, 'pg_class'::regclass, c.oid
         FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.oid IN (SELECT oid FROM sel) AND c.relkind IN ('r', 'p', 'v', 'm') AND (a.attacl IS NOT NULL OR $2) AND a.attnum > 0 AND NOT a.attisdropped
       UNION ALL
       SELECT 'proc', CASE p.prokind WHEN 'p' THEN 'PROCEDURE' WHEN 'a' THEN 'AGGREGATE' ELSE 'FUNCTION' END,
              format('%I.%I(%s)', n.nspname, p.proname, coalesce(nullif(oidvectortypes(p.proargtypes), ''), CASE WHEN p.prokind = 'a' THEN '*' END)),
              CASE p.prokind WHEN 'p' THEN 'PROCEDURE ' ELSE 'FUNCTION ' END || ${routine}, NULL, pg_get_userbyid(p.proowner),
              true, ${ACL_OF('p.proacl', `'f'`, 'p.proowner')}, 'pg_proc'::regclass, p.oid
         FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
        WHERE n.oid IN (SELECT oid FROM sel) AND ${OWNER_OF_ITS_OWN('pg_proc', 'p.oid')}
       UNION ALL
       SELECT 'type', CASE t.typtype WHEN 'd' THEN 'DOMAIN' ELSE 'TYPE' END, ${type},
              CASE t.typtype WHEN 'd' THEN 'DOMAIN ' ELSE 'TYPE ' END || ${type}, NULL, pg_get_userbyid(t.typowner),
              true, ${ACL_OF('t.typacl', `'T'`, 't.typowner')}, 'pg_type'::regclass, t.oid
         FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
        WHERE n.oid IN (SELECT oid FROM sel) AND ${OWNER_OF_ITS_OWN('pg_type', 't.oid')}
          AND (t.typtype IN ('e', 'd', 'r') OR (t.typtype = 'c' AND (SELECT relkind FROM pg_class WHERE oid = t.typrelid) = 'c'))
       UNION ALL
       -- the public schema keeps the target's owner unless the source's is neither the bootstrap superuser nor pg_database_owner
       SELECT 'schema', 'SCHEMA', quote_ident(n.nspname), 'SCHEMA ' || quote_ident(n.nspname), NULL,
              pg_get_userbyid(n.nspowner), n.oid >= 16384 OR pg_get_userbyid(n.nspowner) NOT IN (pg_get_userbyid(10), 'pg_database_owner'),
              ${ACL_OF('n.nspacl', `'n'`, 'n.nspowner')}, 'pg_namespace'::regclass, n.oid
         FROM pg_namespace n WHERE n.oid IN (SELECT oid FROM sel)
       UNION ALL ${others.join('\n       UNION ALL ')}
     )
     SELECT category, keyword, identity, grant_on, "column", owner, change_owner, acl, baseline FROM objects o
      WHERE NOT EXISTS (SELECT 1 FROM pg_depend e WHERE e.classid = o.classid AND e.objid = o.objid AND e.deptype = 'e')
      ORDER BY category = 'schema' DESC, identity`,
    [schemas, allColumns],
  );
  return rows;
}

const keyOf = (o: OwnedObject) => `${o.category} ${o.identity}`;

/** The same objects as they are on the target (search_path empty, as the source is read): by category and identity. */
async function ownedOnTarget(target: pg.Client, schemas: string[]): Promise<Map<string, OwnedObject>> {
  return new Map((await readOwnedObjects(target, schemas, { allColumns: true })).map((o) => [keyOf(o), o]));
}

/** ALTER … OWNER TO the source's owner, where it exists and the target user may give the object away. */
export async function setOwners(run: PostDataRun, owned: OwnedObject[], schemas: string[], user: TargetUser, roles: Set<string>): Promise<void> {
  const onTarget = await ownedOnTarget(run.target, schemas);
  // Objects not on the target are reported where they were left out.
  const changes = owned.filter((o) => o.change_owner && o.keyword && onTarget.has(keyOf(o)) && onTarget.get(keyOf(o))!.owner !== o.owner);
  const { rows } = await run.target.query<{ role: string; usage: boolean }>(
    `SELECT r AS role, pg_has_role(r, 'USAGE') AS usage FROM unnest($1::text[]) r WHERE EXISTS (SELECT 1 FROM pg_roles WHERE rolname = r)`,
    [[...new Set(changes.map((o) => o.owner))]],
  );
  const usable = new Set(rows.filter((r) => r.usage).map((r) => r.role));
  const given = new Map<string, number>();
  for (const o of changes) {
    const what = `${o.keyword!.toLowerCase()} ${o.identity}`;
    const alter = `ALTER ${o.keyword} ${o.identity} OWNER TO ${quoteIdent(o.owner)}`;
    const owner = quoteIdent(onTarget.get(keyOf(o))!.owner);
    if (!roles.has(o.owner)) {
      run.report('owner', what, 'skipped', `owned by ${owner}: role ${quoteIdent(o.owner)} does not exist on the target; create it (or set schema.sync.roles), then ${alter}`);
      continue;
    }
    // A superuser keeps every access; anyone else keeps it through membership (with INHERIT) in the new owner.
    if (!user.superuser && !usable.has(o.owner)) {
      run.report(
        'owner',
        what,
        'skipped',
        `owned by ${owner}: ${quoteIdent(user.name)} is not a member of ${quoteIdent(o.owner)}, so giving the object away would take from it ` +
          `the access that the load, CDC apply and the comparison need; GRANT ${quoteIdent(o.owner)} TO ${quoteIdent(user.name)} before the migration, or ${alter} after cutover`,
      );
      continue;
    }
    try {
      await run.run('owner', what, [alter], 'set the owner of');
      given.set(o.owner, (given.get(o.owner) ?? 0) + 1);
    } catch (error) {
      const code = (error as { cause?: { code?: string } }).cause?.code;
      if (code !== '42501') throw error;
      run.report('owner', what, 'skipped', `owned by ${owner}: ${(error as Error).message}; ${alter} after cutover`);
    }
  }
  for (const [role, count] of given) run.report('owner', quoteIdent(role), 'created', `owns ${count} object(s), as on the source`);
}

/**
 * GRANT/REVOKE on every object that has privileges, so that its target ACL is the source's.
 * What the source takes from an owner is not taken from it on the target unless the target user
 * is a superuser: the target user writes as the owner, or as a member of the owner (CDC apply,
 * the comparison, sequences at cutover); it is named, to revoke after cutover.
 */
export async function grantPrivileges(run: PostDataRun, owned: OwnedObject[], schemas: string[], user: TargetUser, grantees: Grantees): Promise<void> {
  const onTarget = await ownedOnTarget(run.target, schemas);
  for (const o of owned.filter((x) => x.grant_on !== null && x.acl !== null)) {
    const t = onTarget.get(keyOf(o));
    if (!t) continue; // not on the target: reported where it was left out
    const on = o.column !== null ? { object: o.grant_on!, column: quoteIdent(o.column) } : { object: o.grant_on! };
    const what = o.column !== null ? `COLUMN ${o.identity}` : o.grant_on!;
    const { statements, deferred } = aclStatements(
      { owner: o.owner, acl: o.acl!, baseline: o.baseline! },
      { owner: t.owner, acl: t.acl ?? [], baseline: t.baseline ?? [] },
      on,
      grantees,
      what,
      { keepOwner: !user.superuser, grantors: user.superuser },
    );
    if (deferred.length)
      run.report(
        'owner privileges',
        what,
        'skipped',
        `kept until cutover: ${quoteIdent(user.name)} writes as the owner during the migration; then run ${deferred.join('; ')}`,
      );
    if (!statements.length) continue;
    await run.run('privileges', what, statements, 'grant privileges on');
    run.report('privileges', what, 'created', statements.join('; '));
  }
}

export function reportMissingGrantees(run: PostDataRun, grantees: Grantees): void {
  for (const [role, objects] of grantees.missing) {
    const list = [...objects];
    const named = list.slice(0, 5).join(', ') + (list.length > 5 ? ` and ${list.length - 5} more` : '');
    run.report(
      'grantee',
      quoteIdent(role),
      'skipped',
      `does not exist on the target: its privileges on ${named} are not granted; create the role (or set schema.sync.roles) and migrate again`,
    );
  }
}

/** Owners, then privileges (granted as the new owner), then default privileges. */
export async function setOwnersAndPrivileges(run: PostDataRun, owned: OwnedObject[], schemas: string[], defaults: DefaultAclRow[]): Promise<void> {
  const user = await targetUser(run.target);
  const roles = await rolesOnTarget(run.target);
  const grantees: Grantees = { exists: (role) => roles.has(role), missing: new Map() };
  await setOwners(run, owned, schemas, user, roles);
  await grantPrivileges(run, owned, schemas, user, grantees);
  await setDefaultPrivileges(run, defaults, schemas, roles, grantees);
  reportMissingGrantees(run, grantees);
}

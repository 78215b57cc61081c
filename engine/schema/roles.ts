/**
 * Roles: which roles the migrated objects reference (owners, grantees, policy roles,
 * default-privilege roles), which of them the target lacks, and — with `schema.sync.roles` —
 * creating them before the objects that need them, without passwords (as DRS's account sync
 * does), with the attributes the target user may grant, and their memberships among each other.
 */
import type pg from 'pg';
import { quoteIdent } from '../sql.js';
import { serverVersion } from '../connect/index.js';
import type { MigrationSpec } from '../spec/index.js';
import { readSource, schemaFailed, type SchemaObjectResult } from './objects.js';

/** The selected schemas by their quoted identities (what the plan carries). */
export const SELECTED = `sel AS (SELECT oid FROM pg_namespace WHERE quote_ident(nspname) = ANY($1::text[]))`;

interface RoleRow {
  name: string;
  uses: string[];
  superuser: boolean;
  inherit: boolean;
  createrole: boolean;
  createdb: boolean;
  login: boolean;
  replication: boolean;
  bypassrls: boolean;
  connlimit: number;
  validuntil: string | null;
  comment: string | null;
}

/** Roles the objects of the selected schemas reference, with what for; predefined (pg_*) roles excepted. */
export async function referencedRoles(source: pg.Client, schemas: string[]): Promise<RoleRow[]> {
  const acl = (column: string, catalog: string, namespace: string) =>
    `SELECT x.grantee, 'grantee' FROM ${catalog} c, aclexplode(c.${column}) x WHERE c.${namespace} IN (SELECT oid FROM sel) AND x.grantee <> 0`;
  const { rows } = await source.query<RoleRow>(
    `WITH ${SELECTED},
     uses(role, what) AS (
       SELECT relowner, 'owner' FROM pg_class WHERE relnamespace IN (SELECT oid FROM sel)
       UNION ALL SELECT proowner, 'owner' FROM pg_proc WHERE pronamespace IN (SELECT oid FROM sel)
       UNION ALL SELECT typowner, 'owner' FROM pg_type WHERE typnamespace IN (SELECT oid FROM sel)
       UNION ALL SELECT nspowner, 'owner' FROM pg_namespace WHERE oid IN (SELECT oid FROM sel)
       UNION ALL SELECT collowner, 'owner' FROM pg_collation WHERE collnamespace IN (SELECT oid FROM sel)
       UNION ALL SELECT stxowner, 'owner' FROM pg_statistic_ext WHERE stxnamespace IN (SELECT oid FROM sel)
       UNION ALL SELECT oprowner, 'owner' FROM pg_operator WHERE oprnamespace IN (SELECT oid FROM sel)
       UNION ALL SELECT opfowner, 'owner' FROM pg_opfamily WHERE opfnamespace IN (SELECT oid FROM sel)
       UNION ALL SELECT opcowner, 'owner' FROM pg_opclass WHERE opcnamespace IN (SELECT oid FROM sel)
       UNION ALL SELECT cfgowner, 'owner' FROM pg_ts_config WHERE cfgnamespace IN (SELECT oid FROM sel)
       UNION ALL SELECT dictowner, 'owner' FROM pg_ts_dict WHERE dictnamespace IN (SELECT oid FROM sel)
       UNION ALL ${acl('relacl', 'pg_class', 'relnamespace')}
       UNION ALL SELECT x.grantee, 'grantee' FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid, aclexplode(a.attacl) x
        WHERE c.relnamespace IN (SELECT oid FROM sel) AND x.grantee <> 0
       UNION ALL ${acl('proacl', 'pg_proc', 'pronamespace')}
       UNION ALL ${acl('typacl', 'pg_type', 'typnamespace')}
       UNION ALL SELECT x.grantee, 'grantee' FROM pg_namespace c, aclexplode(c.nspacl) x WHERE c.oid IN (SELECT oid FROM sel) AND x.grantee <> 0
       UNION ALL SELECT r, 'policy role' FROM pg_policy p JOIN pg_class c ON c.oid = p.polrelid, unnest(p.polroles) r
        WHERE c.relnamespace IN (SELECT oid FROM sel) AND r <> 0
       UNION ALL SELECT d.defaclrole, 'default privileges' FROM pg_default_acl d
        WHERE d.defaclnamespace = 0 OR d.defaclnamespace IN (SELECT oid FROM sel)
       UNION ALL SELECT x.grantee, 'default privileges' FROM pg_default_acl d, aclexplode(d.defaclacl) x
        WHERE (d.defaclnamespace = 0 OR d.defaclnamespace IN (SELECT oid FROM sel)) AND x.grantee <> 0
     )
     SELECT r.rolname AS name, array_agg(DISTINCT u.what ORDER BY u.what) AS uses, r.rolsuper AS superuser, r.rolinherit AS inherit,
            r.rolcreaterole AS createrole, r.rolcreatedb AS createdb, r.rolcanlogin AS login, r.rolreplication AS replication,
            r.rolbypassrls AS bypassrls, r.rolconnlimit AS connlimit, r.rolvaliduntil::text AS validuntil,
            shobj_description(r.oid, 'pg_authid') AS comment
       FROM uses u JOIN pg_roles r ON r.oid = u.role
      WHERE r.rolname NOT LIKE 'pg\\_%'
      GROUP BY r.oid, r.rolname, r.rolsuper, r.rolinherit, r.rolcreaterole, r.rolcreatedb, r.rolcanlogin, r.rolreplication,
               r.rolbypassrls, r.rolconnlimit, r.rolvaliduntil
      ORDER BY r.rolname`,
    [schemas],
  );
  return rows;
}

/** Who the target user is: what it may do with roles and row-level security. */
export interface TargetUser {
  name: string;
  superuser: boolean;
  createrole: boolean;
  createdb: boolean;
  replication: boolean;
  bypassrls: boolean;
  version: number;
}

export async function targetUser(target: pg.Client): Promise<TargetUser> {
  const { rows } = await target.query(
    `SELECT rolname AS name, rolsuper AS superuser, rolcreaterole AS createrole, rolcreatedb AS createdb,
            rolreplication AS replication, rolbypassrls AS bypassrls
       FROM pg_roles WHERE rolname = current_user`,
  );
  return { ...rows[0], version: await serverVersion(target) };
}

export async function rolesOnTarget(target: pg.Client): Promise<Set<string>> {
  const { rows } = await target.query<{ rolname: string }>('SELECT rolname FROM pg_roles');
  return new Set(rows.map((r) => r.rolname));
}

/** The attributes of `role` the target user may not give, each with why. */
function refusedAttributes(role: RoleRow, user: TargetUser): string[] {
  if (user.superuser) return [];
  const own = (attribute: keyof TargetUser) =>
    user.version >= 160000 ? `the target user does not have ${attribute.toUpperCase()} itself` : 'the target user is not a superuser';
  const refused: string[] = [];
  if (role.superuser) refused.push('SUPERUSER (the target user is not a superuser)');
  if (role.replication && !(user.version >= 160000 && user.replication)) refused.push(`REPLICATION (${own('replication')})`);
  if (role.bypassrls && !(user.version >= 160000 && user.bypassrls)) refused.push(`BYPASSRLS (${own('bypassrls')})`);
  if (role.createdb && user.version >= 160000 && !user.createdb) refused.push(`CREATEDB (${own('createdb')})`);
  return refused;
}

function createRole(role: RoleRow, refused: string[]): string {
  const given = (attribute: string, on: boolean) => (on && !refused.some((r) => r.startsWith(attribute)) ? attribute : `NO${attribute}`);
  const options = [
    given('SUPERUSER', role.superuser),
    role.inherit ? 'INHERIT' : 'NOINHERIT',
    given('CREATEROLE', role.createrole),
    given('CREATEDB', role.createdb),
    role.login ? 'LOGIN' : 'NOLOGIN',
    given('REPLICATION', role.replication),
    given('BYPASSRLS', role.bypassrls),
    `CONNECTION LIMIT ${role.connlimit}`,
    ...(role.validuntil && role.validuntil !== 'infinity' ? [`VALID UNTIL '${role.validuntil}'`] : []),
  ];
  return `CREATE ROLE ${quoteIdent(role.name)} WITH ${options.join(' ')}`;
}

/**
 * Pre-data, before the schemas: reports every referenced role the target lacks, and with
 * `schema.sync.roles` creates it. Runs in the pre-data transaction.
 */
export async function syncRoles(source: pg.Client, target: pg.Client, spec: MigrationSpec, schemas: string[]): Promise<SchemaObjectResult[]> {
  const { roles, memberships, settings } = await readSource(source, async () => {
    const roles = await referencedRoles(source, schemas);
    const names = roles.map((r) => r.name);
    return { roles, memberships: await roleMemberships(source, names), settings: await roleSettings(source, names) };
  });
  const existing = await rolesOnTarget(target);
  const missing = roles.filter((r) => !existing.has(r.name));
  if (!spec.schema.sync.roles)
    return missing.map((r) => ({
      kind: 'role',
      identity: quoteIdent(r.name),
      status: 'skipped',
      detail:
        `does not exist on the target (used as ${r.uses.join(', ')}): what it owns stays with the target user and what it is granted ` +
        'is not granted; create the role on the target before the migration, or set schema.sync.roles to true',
    }));
  const user = await targetUser(target);
  const results: SchemaObjectResult[] = [];
  if (missing.length && !user.superuser && !user.createrole) {
    const detail = `does not exist on the target and cannot be created: the target user ${user.name} has neither SUPERUSER nor CREATEROLE`;
    return missing.map((r) => ({ kind: 'role', identity: quoteIdent(r.name), status: 'skipped', detail }));
  }
  for (const role of missing) {
    const refused = refusedAttributes(role, user);
    await runRoleStatement(target, role.name, createRole(role, refused), 'create');
    if (role.comment !== null)
      await runRoleStatement(target, role.name, `COMMENT ON ROLE ${quoteIdent(role.name)} IS '${role.comment.replace(/'/g, "''")}'`, 'comment on');
    const without = refused.length ? `created without ${refused.join(', ')}; ` : '';
    results.push({ kind: 'role', identity: quoteIdent(role.name), status: 'created', detail: `${without}no password: set one to log in` });
  }
  const created = new Set(missing.map((r) => r.name));
  results.push(...(await grantMemberships(target, memberships, created, user)));
  results.push(...(await applyRoleSettings(target, settings, created, user)));
  return results;
}

/** Runs `sql` in a savepoint of the pre-data transaction: its failure, returned, undoes only it. */
async function attempt(target: pg.Client, sql: string): Promise<Error | undefined> {
  await target.query('SAVEPOINT role_step');
  try {
    await target.query(sql);
    await target.query('RELEASE SAVEPOINT role_step');
    return undefined;
  } catch (error) {
    await target.query('ROLLBACK TO SAVEPOINT role_step');
    return error as Error;
  }
}

interface RoleSetting {
  role: string;
  /** Whether the setting is for the migrated database only (else for every database). */
  here: boolean;
  name: string;
  value: string;
}

async function roleSettings(source: pg.Client, roles: string[]): Promise<RoleSetting[]> {
  const { rows } = await source.query<RoleSetting>(
    `SELECT r.rolname AS role, s.setdatabase <> 0 AS here, split_part(c, '=', 1) AS name, substr(c, strpos(c, '=') + 1) AS value
       FROM pg_db_role_setting s JOIN pg_roles r ON r.oid = s.setrole, unnest(s.setconfig) c
      WHERE r.rolname = ANY($1::text[]) AND s.setdatabase IN (0, (SELECT oid FROM pg_database WHERE datname = current_database()))
      ORDER BY 1, 2, 3`,
    [roles],
  );
  return rows;
}

/** Settings stored as SQL lists already (pg_dumpall leaves them unquoted); any other value is one literal. */
const LIST_SETTINGS = new Set(['search_path', 'temp_tablespaces', 'session_preload_libraries', 'local_preload_libraries']);

/** ALTER ROLE … [IN DATABASE …] SET, for the roles just created. */
async function applyRoleSettings(target: pg.Client, settings: RoleSetting[], created: Set<string>, user: TargetUser): Promise<SchemaObjectResult[]> {
  const results: SchemaObjectResult[] = [];
  const { rows } = await target.query<{ db: string }>('SELECT quote_ident(current_database()) AS db');
  for (const s of settings.filter((x) => created.has(x.role))) {
    const value = LIST_SETTINGS.has(s.name) ? s.value : `'${s.value.replace(/'/g, "''")}'`;
    const sql = `ALTER ROLE ${quoteIdent(s.role)}${s.here ? ` IN DATABASE ${rows[0]!.db}` : ''} SET ${quoteIdent(s.name)} TO ${value}`;
    const identity = `${quoteIdent(s.role)}${s.here ? ' in this database' : ''}: ${s.name}`;
    const error = await attempt(target, sql);
    results.push(error ? { kind: 'role setting', identity, status: 'skipped', detail: `cannot be set by ${user.name}: ${error.message}` } : { kind: 'role setting', identity, status: 'created' });
  }
  return results;
}

async function runRoleStatement(target: pg.Client, role: string, sql: string, action: string): Promise<void> {
  try {
    await target.query(sql);
  } catch (error) {
    throw schemaFailed(action, 'role', quoteIdent(role), error);
  }
}

interface Membership {
  role: string;
  member: string;
  admin: boolean;
  /** PostgreSQL 16+ only: null before. */
  inherit: boolean | null;
  set: boolean | null;
}

async function roleMemberships(source: pg.Client, roles: string[]): Promise<Membership[]> {
  const version = await serverVersion(source);
  const options = version >= 160000 ? 'm.inherit_option AS inherit, m.set_option AS set' : 'NULL::boolean AS inherit, NULL::boolean AS set';
  const { rows } = await source.query<Membership>(
    `SELECT r.rolname AS role, u.rolname AS member, m.admin_option AS admin, ${options}
       FROM pg_auth_members m JOIN pg_roles r ON r.oid = m.roleid JOIN pg_roles u ON u.oid = m.member
      WHERE r.rolname = ANY($1::text[]) AND u.rolname = ANY($1::text[])
      ORDER BY 1, 2`,
    [roles],
  );
  return rows;
}

/** Memberships among the referenced roles where one side was just created (the others' are the target's business). */
async function grantMemberships(target: pg.Client, memberships: Membership[], created: Set<string>, user: TargetUser): Promise<SchemaObjectResult[]> {
  const results: SchemaObjectResult[] = [];
  for (const m of memberships) {
    if (!created.has(m.role) && !created.has(m.member)) continue;
    const options = [
      ...(m.admin ? ['ADMIN OPTION'] : []),
      ...(user.version >= 160000 && m.inherit !== null ? [`INHERIT ${m.inherit ? 'TRUE' : 'FALSE'}`, `SET ${m.set ? 'TRUE' : 'FALSE'}`] : []),
    ];
    const sql = `GRANT ${quoteIdent(m.role)} TO ${quoteIdent(m.member)}${options.length ? ` WITH ${options.join(', ')}` : ''}`;
    const identity = `${quoteIdent(m.role)} to ${quoteIdent(m.member)}`;
    const error = await attempt(target, sql);
    results.push(
      error
        ? { kind: 'role membership', identity, status: 'skipped', detail: `cannot be granted by ${user.name}: ${error.message}` }
        : { kind: 'role membership', identity, status: 'created' },
    );
  }
  return results;
}

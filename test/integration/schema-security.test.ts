/**
 * Issue 13 ("security"): roles, owners, privileges (the public schema's too), default
 * privileges, comments on every kind, rules, row-level security, extended statistics, index
 * statistics targets and column options, migrated 15 → 15 (pg_dump is the oracle, owners and
 * privileges included) and 13 → 17 (catalog queries), and a missing role named in the report.
 */
import { spawnSync } from 'node:child_process';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ensureControlSchema } from '../../engine/control/index.js';
import { migratePostData, migratePreData, type SchemaObjectResult } from '../../engine/schema/index.js';
import type { MigrationSpecInput } from '../../engine/spec/index.js';
import { migrationSpecSchema } from '../../engine/spec/schema.js';
import { runPrecheck } from '../../engine/precheck/index.js';
import { startClusters, type LocalCluster } from '../../local/dev/cluster.js';
import { DefaultSecretsProvider } from '../../platform/secrets/index.js';
import { scratchDir } from '../support/clusters.js';

const ROLES_SQL = `
CREATE ROLE app_owner NOLOGIN;
CREATE ROLE app_reader NOLOGIN;
CREATE ROLE app_writer LOGIN CREATEDB CONNECTION LIMIT 5;
CREATE ROLE admin_group NOLOGIN;
CREATE ROLE policy_only NOLOGIN;
CREATE ROLE "Odd Role" NOLOGIN;
GRANT admin_group TO app_writer WITH ADMIN OPTION;
COMMENT ON ROLE app_owner IS 'owns the app';
ALTER ROLE app_writer SET search_path = app, public;
ALTER ROLE app_writer SET work_mem = '8MB';
`;

/** Objects owned by app_owner (and one by "Odd Role"), granted, commented, guarded; valid on 13 and later. */
const SOURCE_SQL = `
CREATE EXTENSION citext SCHEMA public;
CREATE SCHEMA app AUTHORIZATION app_owner;
CREATE SCHEMA "Odd Schema" AUTHORIZATION "Odd Role";
SET ROLE app_owner;
CREATE TYPE app.mood AS ENUM ('ok', 'meh');
CREATE DOMAIN app.posint AS int CONSTRAINT posint_check CHECK (VALUE > 0);
CREATE TYPE app.pair AS (a int, b int);
CREATE COLLATION app.bytes (provider = libc, locale = 'C');
CREATE SEQUENCE app.counter;
CREATE FUNCTION app.f(a int) RETURNS int LANGUAGE sql AS 'SELECT a';
CREATE PROCEDURE app.p() LANGUAGE sql AS 'SELECT 1';
CREATE TABLE app.accounts (
  id int PRIMARY KEY, owner_name text, balance numeric, region text, note app.posint,
  CONSTRAINT balance_ok CHECK (balance >= 0)
);
CREATE TABLE app.ledger (id bigserial PRIMARY KEY, account int, amount numeric);
CREATE TABLE app.events (id int, at date) PARTITION BY RANGE (at);
CREATE TABLE app.events_2025 PARTITION OF app.events FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');
GRANT SELECT ON app.events TO app_reader;
GRANT INSERT ON app.events_2025 TO app_writer;
CREATE INDEX accounts_lower ON app.accounts (lower(owner_name));
ALTER INDEX app.accounts_lower ALTER COLUMN 1 SET STATISTICS 321;
ALTER TABLE app.accounts ALTER COLUMN region SET (n_distinct = 12);
CREATE STATISTICS app.accounts_stats (ndistinct, dependencies) ON owner_name, region FROM app.accounts;
ALTER STATISTICS app.accounts_stats SET STATISTICS 500;
CREATE VIEW app.v AS SELECT id, owner_name FROM app.accounts;
CREATE MATERIALIZED VIEW app.mv AS SELECT count(*) AS n FROM app.accounts;
CREATE TRIGGER accounts_touch BEFORE UPDATE ON app.accounts FOR EACH ROW EXECUTE FUNCTION suppress_redundant_updates_trigger();
CREATE RULE accounts_notify AS ON DELETE TO app.accounts DO ALSO NOTIFY accounts_deleted;
CREATE RULE v_insert AS ON INSERT TO app.v DO INSTEAD INSERT INTO app.accounts (id, owner_name) VALUES (NEW.id, NEW.owner_name);
CREATE RULE ledger_quiet AS ON UPDATE TO app.ledger DO ALSO NOTIFY ledger_changed;
ALTER TABLE app.ledger DISABLE RULE ledger_quiet;
ALTER TABLE app.accounts ENABLE ROW LEVEL SECURITY, FORCE ROW LEVEL SECURITY;
CREATE POLICY own_rows ON app.accounts AS PERMISSIVE FOR SELECT TO app_reader USING (owner_name = current_user);
CREATE POLICY only_positive ON app.accounts AS RESTRICTIVE FOR INSERT TO policy_only WITH CHECK (balance > 0);
CREATE POLICY everyone ON app.accounts USING (balance > 15) WITH CHECK (true);
GRANT USAGE ON SCHEMA app TO app_reader, app_writer;
GRANT SELECT ON app.accounts, app.v, app.mv TO app_reader;
GRANT SELECT (id, owner_name), UPDATE (balance) ON app.accounts TO app_writer;
GRANT INSERT, UPDATE ON app.accounts TO app_writer WITH GRANT OPTION;
GRANT SELECT ON app.v TO admin_group;
REVOKE TRUNCATE ON app.accounts FROM app_owner;
GRANT USAGE, SELECT ON SEQUENCE app.counter TO app_writer;
REVOKE EXECUTE ON FUNCTION app.f(int) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION app.f(int) TO app_reader;
GRANT EXECUTE ON PROCEDURE app.p() TO app_writer;
REVOKE USAGE ON TYPE app.mood FROM PUBLIC;
GRANT USAGE ON TYPE app.mood TO app_reader;
GRANT USAGE ON DOMAIN app.posint TO app_writer;
RESET ROLE;
SET ROLE app_writer;
GRANT INSERT ON app.accounts TO app_reader;
RESET ROLE;
SET ROLE "Odd Role";
CREATE TABLE "Odd Schema"."Odd Table" (id int PRIMARY KEY, "Odd Col" text);
ALTER TABLE "Odd Schema"."Odd Table" ENABLE ROW LEVEL SECURITY;
CREATE POLICY "Odd Policy" ON "Odd Schema"."Odd Table" FOR UPDATE USING (id > 0);
RESET ROLE;
CREATE TABLE app.admin_only (id int PRIMARY KEY);
GRANT USAGE ON SCHEMA public TO app_reader;
GRANT CREATE ON SCHEMA public TO app_writer;
ALTER DEFAULT PRIVILEGES FOR ROLE app_owner IN SCHEMA app GRANT SELECT ON TABLES TO app_reader;
ALTER DEFAULT PRIVILEGES FOR ROLE app_owner REVOKE EXECUTE ON FUNCTIONS FROM PUBLIC;
ALTER DEFAULT PRIVILEGES FOR ROLE app_writer GRANT USAGE ON SEQUENCES TO app_reader;
COMMENT ON SCHEMA app IS 'the app';
COMMENT ON SCHEMA "Odd Schema" IS 'odd ''schema''';
COMMENT ON TABLE "Odd Schema"."Odd Table" IS 'odd table';
COMMENT ON COLUMN "Odd Schema"."Odd Table"."Odd Col" IS 'odd column';
COMMENT ON POLICY "Odd Policy" ON "Odd Schema"."Odd Table" IS 'odd policy';
COMMENT ON TABLE app.accounts IS 'accounts';
COMMENT ON COLUMN app.accounts.balance IS 'in cents';
COMMENT ON VIEW app.v IS 'a view';
COMMENT ON COLUMN app.v.owner_name IS 'a view column';
COMMENT ON MATERIALIZED VIEW app.mv IS 'a materialized view';
COMMENT ON INDEX app.accounts_lower IS 'an index';
COMMENT ON CONSTRAINT balance_ok ON app.accounts IS 'a check';
COMMENT ON CONSTRAINT accounts_pkey ON app.accounts IS 'a key';
COMMENT ON CONSTRAINT posint_check ON DOMAIN app.posint IS 'a domain check';
COMMENT ON TRIGGER accounts_touch ON app.accounts IS 'a trigger';
COMMENT ON POLICY own_rows ON app.accounts IS 'a policy';
COMMENT ON RULE accounts_notify ON app.accounts IS 'a rule';
COMMENT ON SEQUENCE app.counter IS 'a sequence';
COMMENT ON FUNCTION app.f(int) IS 'a function';
COMMENT ON PROCEDURE app.p() IS 'a procedure';
COMMENT ON TYPE app.mood IS 'an enum';
COMMENT ON DOMAIN app.posint IS 'a domain';
COMMENT ON TYPE app.pair IS 'a composite type';
COMMENT ON COLUMN app.pair.a IS 'an attribute';
COMMENT ON COLLATION app.bytes IS 'a collation';
COMMENT ON STATISTICS app.accounts_stats IS 'statistics';
COMMENT ON EXTENSION citext IS 'case-insensitive text, commented';
INSERT INTO app.accounts VALUES (1, 'app_reader', 10, 'eu', 1), (2, 'someone', 20, 'us', 2);
`;

const clusters = new Map<string, LocalCluster>();
const scratch = scratchDir('schema-security');
const clients: pg.Client[] = [];
const cluster = (label: string) => clusters.get(label)!;

async function connect(label: string, database: string): Promise<pg.Client> {
  const client = await cluster(label).connect(database);
  clients.push(client);
  return client;
}

const specFor = (input: Partial<MigrationSpecInput> = {}) =>
  migrationSpecSchema.parse({ name: 'security-test', source: { secret: 'env:S' }, target: { secret: 'env:T' }, ...input });

/** A client of the `to` cluster logged in as `user` (default: the superuser). */
async function targetClient(to: string, database: string, user?: { name: string; password: string }): Promise<pg.Client> {
  if (!user) return cluster(to).connect(database);
  const { host, port } = cluster(to).connection;
  const client = new pg.Client({ host, port, user: user.name, password: user.password, database });
  client.on('error', () => undefined);
  await client.connect();
  return client;
}

async function migrate(
  from: string,
  to: string,
  database: string,
  input: Partial<MigrationSpecInput> = {},
  user?: { name: string; password: string },
): Promise<SchemaObjectResult[]> {
  if (!user) await cluster(to).sql(`CREATE DATABASE ${database}`);
  const spec = specFor(input);
  const source = await connect(from, 'app');
  const target = await targetClient(to, database, user);
  clients.push(target);
  const pre = await migratePreData(source, target, spec);
  await target.query(`INSERT INTO app.accounts VALUES (1, 'app_reader', 10, 'eu', 1), (2, 'someone', 20, 'us', 2)`);
  const post = await migratePostData(() => cluster(from).connect('app'), () => targetClient(to, database, user), spec);
  return [...pre.objects, ...post.objects];
}

beforeAll(async () => {
  const started = await startClusters([
    { major: 13, label: 'sec13' },
    { major: 15, label: 'sec15' },
    { major: 15, label: 'sec15b' },
    { major: 17, label: 'sec17' },
  ]);
  for (const [i, label] of ['13', '15', '15b', '17'].entries()) clusters.set(label, started[i]!);
  for (const label of ['13', '15']) {
    await cluster(label).sql(ROLES_SQL);
    await cluster(label).sql('CREATE DATABASE app');
    await cluster(label).sql(SOURCE_SQL, 'app');
  }
});

afterAll(async () => {
  await Promise.all(clients.map((c) => c.end().catch(() => undefined)));
  await Promise.all([...clusters.values()].map((c) => c.stop()));
  scratch.remove();
});

/** The precheck's security check, 15 → `to` (database `database`), as `user` on the target. */
async function securityPrecheck(to: string, database: string, input: Partial<MigrationSpecInput> = {}, user?: { name: string; password: string }) {
  const spec = specFor({
    ...input,
    source: { secret: scratch.secretFor('source', cluster('15'), { dbname: 'app' }) },
    target: { secret: scratch.secretFor(`target-${database}`, cluster(to), { dbname: database, ...(user ? { username: user.name, password: user.password } : {}) }) },
  });
  const report = await runPrecheck(spec, new DefaultSecretsProvider());
  return report.checks.find((c) => c.id === 'target.security')!;
}

describe('roles, owners, privileges, comments and row-level security', () => {
  // First, while the 17 cluster has none of the source's roles.
  it('names each missing role, and what it leaves undone, without schema.sync.roles: in precheck, then in the report', async () => {
    await cluster('17').sql('CREATE DATABASE no_roles');
    const check = await securityPrecheck('17', 'no_roles');
    expect(check.status).toBe('warn');
    expect(check.message).toContain('Roles the migrated objects reference do not exist on the target: "Odd Role" (owner), "admin_group" (grantee), ');
    expect(check.message).toContain('"policy_only" (policy role)');
    expect(check.remediation).toBe('Create these roles on the target, or set schema.sync.roles to true.');
    expect(await securityPrecheck('17', 'no_roles', { schema: { sync: { roles: true } } })).toMatchObject({ status: 'pass' });

    await cluster('17').sql('DROP DATABASE no_roles');
    const objects = await migrate('15', '17', 'no_roles');
    const reader = objects.find((o) => o.kind === 'role' && o.identity === '"app_reader"');
    expect(reader).toMatchObject({ status: 'skipped' });
    expect(reader!.detail).toMatch(/does not exist on the target \(used as .*grantee.*\).*schema\.sync\.roles/);
    expect(objects).toContainEqual(expect.objectContaining({ kind: 'role', identity: '"policy_only"', status: 'skipped' }));
    expect(objects).toContainEqual(expect.objectContaining({ kind: 'grantee', identity: '"app_reader"', status: 'skipped' }));
    const owner = objects.find((o) => o.kind === 'owner' && o.identity === 'table app.accounts');
    expect(owner?.detail).toMatch(/^owned by "postgres": role "app_owner" does not exist on the target; .*ALTER TABLE app\.accounts OWNER TO "app_owner"/);
    expect(objects).toContainEqual({
      kind: 'policy',
      identity: 'own_rows on app.accounts',
      status: 'skipped',
      detail: 'its role(s) "app_reader" do not exist on the target: create them (or set schema.sync.roles) and migrate again',
    });
    // What needs no role still comes: the public policy, RLS, comments, the quoted schema's.
    expect(objects).toContainEqual({ kind: 'policy', identity: 'everyone on app.accounts', status: 'created' });
    expect(objects).toContainEqual({ kind: 'comment', identity: 'table column "Odd Schema"."Odd Table"."Odd Col"', status: 'created' });
    expect(objects.filter((o) => o.status === 'not_migrated')).toEqual([]);
  });

  it('makes a 15 → 15 target, roles synced, that pg_dump cannot tell from its source, owners and privileges included', async () => {
    const objects = await migrate('15', '15b', 'app', { schema: { sync: { roles: true } } });
    expect(objects.filter((o) => o.kind === 'role').map((o) => [o.identity, o.status])).toEqual([
      ['"Odd Role"', 'created'],
      ['"admin_group"', 'created'],
      ['"app_owner"', 'created'],
      ['"app_reader"', 'created'],
      ['"app_writer"', 'created'],
      ['"policy_only"', 'created'],
    ]);
    expect(objects.filter((o) => o.status === 'skipped' || o.status === 'not_migrated')).toEqual([]);
    await ensureControlSchema(await connect('15b', 'app')); // present on a real target, and excluded below

    const dump = (label: string) => {
      const { host, port, username, password } = cluster(label).connection;
      const result = spawnSync('/usr/bin/pg_dump', ['--schema-only', '--exclude-schema=pgferry', '-h', host, '-p', String(port), '-U', username, '-d', 'app'], {
        env: { ...process.env, PGPASSWORD: password },
        encoding: 'utf8',
      });
      if (result.status !== 0) throw new Error(`pg_dump failed: ${result.stderr}`);
      return result.stdout
        .replace(/^\\(un)?restrict .*$/gm, '')
        .split('\n')
        .sort()
        .join('\n');
    };
    // A second post-data finds everything in place: nothing to set again.
    const again = await migratePostData(() => cluster('15').connect('app'), () => cluster('15b').connect('app'), specFor({ schema: { sync: { roles: true } } }));
    expect(again.objects.filter((o) => ['comment', 'owner', 'privileges', 'default privileges'].includes(o.kind))).toEqual([]);
    const [expected, actual] = [dump('15'), dump('15b')];
    expect(actual).toContain('ALTER TABLE ONLY app.accounts FORCE ROW LEVEL SECURITY;');
    expect(actual).toContain('COMMENT ON POLICY "Odd Policy" ON "Odd Schema"."Odd Table" IS \'odd policy\';');
    expect(actual).toEqual(expected);

    const roles = `SELECT r.rolname, r.rolsuper, r.rolinherit, r.rolcreaterole, r.rolcreatedb, r.rolcanlogin, r.rolconnlimit,
                          ARRAY(SELECT g.rolname || CASE WHEN m.admin_option THEN ' (admin)' ELSE '' END
                                  FROM pg_auth_members m JOIN pg_roles g ON g.oid = m.roleid WHERE m.member = r.oid ORDER BY 1) AS member_of,
                          (SELECT s.setconfig FROM pg_db_role_setting s WHERE s.setrole = r.oid AND s.setdatabase = 0) AS settings
                     FROM pg_roles r WHERE r.rolname IN ('app_owner', 'app_reader', 'app_writer', 'admin_group', 'policy_only', 'Odd Role') ORDER BY 1`;
    const [sourceRoles, targetRoles] = await Promise.all([cluster('15').sql(roles), cluster('15b').sql(roles)]);
    expect(targetRoles[0]!.rows).toEqual(sourceRoles[0]!.rows);
    const comment = `SELECT shobj_description('app_owner'::regrole, 'pg_authid') AS comment`;
    expect((await cluster('15b').sql(comment))[0]!.rows).toEqual([{ comment: 'owns the app' }]);
    expect(targetRoles[0]!.rows.find((r) => r.rolname === 'app_writer')).toMatchObject({
      rolcanlogin: true,
      rolcreatedb: true,
      member_of: ['admin_group (admin)'],
      settings: ['search_path=app, public', 'work_mem=8MB'],
    });
  });

  it('gives a 13 → 17 target the public schema ACL, owners, privileges, default privileges and comments of its source', async () => {
    const objects = await migrate('13', '17', 'from13', { schema: { sync: { roles: true } } });
    expect(objects.filter((o) => o.status === 'skipped' || o.status === 'not_migrated')).toEqual([]);
    const [expected, actual] = await Promise.all([securitySnapshot(cluster('13'), 'app'), securitySnapshot(cluster('17'), 'from13')]);
    for (const part of Object.keys(expected)) expect({ [part]: actual[part] }).toEqual({ [part]: expected[part] });
    expect(actual.publicSchema).toContainEqual(['PUBLIC', 'CREATE', false]); // 15+ would have left PUBLIC only USAGE
  });

  // After the 13 → 17 case: the roles exist on 17.
  it('keeps a target user that is not a superuser able to write: owners only where it is a member, FORCE left to after cutover', async () => {
    const migrator = { name: 'migrator', password: 'migrator-secret' };
    await cluster('17').sql(`CREATE ROLE migrator LOGIN PASSWORD '${migrator.password}'; GRANT app_owner TO migrator`);
    await cluster('17').sql('CREATE DATABASE as_migrator OWNER migrator');
    const check = await securityPrecheck('17', 'as_migrator', {}, migrator);
    expect(check.status).toBe('warn');
    expect(check.message).toContain('"migrator" is not a member of "Odd Role", "postgres": what they own on the source stays owned by "migrator"');
    expect(check.message).toContain('FORCE ROW LEVEL SECURITY of app.accounts will be left off');
    const objects = await migrate('15', '17', 'as_migrator', {}, migrator);

    expect(objects).toContainEqual({ kind: 'owner', identity: '"app_owner"', status: 'created', detail: expect.stringMatching(/^owns \d+ object\(s\), as on the source$/) });
    const odd = objects.find((o) => o.kind === 'owner' && o.identity === 'table "Odd Schema"."Odd Table"');
    expect(odd).toMatchObject({ status: 'skipped' });
    expect(odd!.detail).toBe(
      'owned by "migrator": "migrator" is not a member of "Odd Role", so giving the object away would take from it the access that the load, ' +
        'CDC apply and the comparison need; GRANT "Odd Role" TO "migrator" before the migration, or ALTER TABLE "Odd Schema"."Odd Table" OWNER TO "Odd Role" after cutover',
    );
    const force = objects.find((o) => o.kind === 'row level security' && o.identity === 'app.accounts');
    expect(force).toMatchObject({ status: 'skipped' });
    expect(force!.detail).toMatch(/^enabled; FORCE ROW LEVEL SECURITY left off: the target user "migrator" is neither superuser nor BYPASSRLS.*ALTER TABLE app\.accounts FORCE ROW LEVEL SECURITY after cutover$/);
    expect(objects).toContainEqual({
      kind: 'owner privileges',
      identity: 'TABLE app.accounts',
      status: 'skipped',
      detail: 'kept until cutover: "migrator" writes as the owner during the migration; then run REVOKE TRUNCATE ON TABLE app.accounts FROM "app_owner"',
    });
    const writer = objects.find((o) => o.kind === 'default privileges' && o.identity === 'sequences of "app_writer"');
    expect(writer).toMatchObject({ status: 'skipped' });

    // As CDC apply and the comparison would: every row, through the row-level security of tables it owns or whose owner it is a member of.
    const target = await targetClient('17', 'as_migrator', migrator);
    clients.push(target);
    const { rows } = await target.query(`SELECT pg_get_userbyid(relowner) AS owner, relrowsecurity, relforcerowsecurity FROM pg_class WHERE oid = 'app.accounts'::regclass`);
    expect(rows).toEqual([{ owner: 'app_owner', relrowsecurity: true, relforcerowsecurity: false }]);
    expect((await target.query('UPDATE app.accounts SET balance = balance + 1')).rowCount).toBe(2);
    await target.query('TRUNCATE app.ledger, app.accounts'); // CDC apply replays a TRUNCATE the source ran as its owner
    await target.query(`INSERT INTO app.accounts VALUES (1, 'app_reader', 11, 'eu', 1), (2, 'someone', 21, 'us', 2)`);
    expect((await target.query('SELECT id FROM app.accounts ORDER BY id')).rows).toEqual([{ id: 1 }, { id: 2 }]);
    await target.query(`INSERT INTO "Odd Schema"."Odd Table" VALUES (1, 'x')`);
    expect((await target.query('SELECT count(*)::int AS n FROM "Odd Schema"."Odd Table"')).rows).toEqual([{ n: 1 }]);
    // Without the membership, the policies would have hidden row 1 (balance ≤ 15) from it.
  });

  // Last: it adds a role to the source.
  it('creates with schema.sync.roles what a CREATEROLE target user may create, and says which attributes it could not give', async () => {
    await cluster('15').sql(`CREATE ROLE replicator NOLOGIN REPLICATION BYPASSRLS CREATEDB`);
    await cluster('15').sql(`GRANT SELECT ON app.admin_only TO replicator`, 'app');
    await cluster('17').sql('ALTER ROLE migrator CREATEROLE');
    await cluster('17').sql('CREATE DATABASE synced_by_migrator OWNER migrator');
    const migrator = { name: 'migrator', password: 'migrator-secret' };
    const check = await securityPrecheck('17', 'synced_by_migrator', { schema: { sync: { roles: true } } }, migrator);
    expect(check.message).toContain('"migrator" is not a member of "Odd Role", "postgres"');
    expect(check.message).not.toContain('do not exist on the target');
    const objects = await migrate('15', '17', 'synced_by_migrator', { schema: { sync: { roles: true } } }, migrator);
    expect(objects.filter((o) => o.kind === 'role')).toEqual([
      {
        kind: 'role',
        identity: '"replicator"',
        status: 'created',
        detail:
          'created without REPLICATION (the target user does not have REPLICATION itself), BYPASSRLS (the target user does not have BYPASSRLS itself), ' +
          'CREATEDB (the target user does not have CREATEDB itself); no password: set one to log in',
      },
    ]);
    const [roles] = await cluster('17').sql(`SELECT rolreplication, rolbypassrls, rolcreatedb, rolcanlogin FROM pg_roles WHERE rolname = 'replicator'`);
    expect(roles!.rows).toEqual([{ rolreplication: false, rolbypassrls: false, rolcreatedb: false, rolcanlogin: false }]);
    expect(objects).toContainEqual({ kind: 'privileges', identity: 'TABLE app.admin_only', status: 'created', detail: 'GRANT SELECT ON TABLE app.admin_only TO "replicator"' });
  });
});

/** Owners, ACLs (MAINTAIN, new in 17, left out), default privileges, comments, policies and RLS flags, by name. */
async function securitySnapshot(c: LocalCluster, database: string): Promise<Record<string, unknown[]>> {
  const items = (acl: string, owner: string) =>
    `ARRAY(SELECT jsonb_build_array(CASE WHEN x.grantee = ${owner} THEN 'OWNER' WHEN x.grantee = 0 THEN 'PUBLIC' ELSE pg_get_userbyid(x.grantee) END,
                                    x.privilege_type, x.is_grantable)
             FROM aclexplode(${acl}) x WHERE x.privilege_type <> 'MAINTAIN' ORDER BY 1)`;
  const queries: Record<string, string> = {
    publicSchema: `SELECT jsonb_build_array(CASE WHEN x.grantee = n.nspowner THEN 'OWNER' WHEN x.grantee = 0 THEN 'PUBLIC' ELSE pg_get_userbyid(x.grantee) END,
                          x.privilege_type, x.is_grantable) AS row
                     FROM pg_namespace n, aclexplode(n.nspacl) x WHERE n.nspname = 'public' ORDER BY 1`,
    relations: `SELECT format('%I.%I', n.nspname, c.relname), pg_get_userbyid(c.relowner), ${items('coalesce(c.relacl, acldefault(\'r\', c.relowner))', 'c.relowner')},
                       c.relrowsecurity, c.relforcerowsecurity
                  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname IN ('app', 'Odd Schema') ORDER BY 1`,
    columns: `SELECT format('%I.%I', c.relname, a.attname), ${items('a.attacl', '0')}, a.attoptions
                FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace
               WHERE n.nspname = 'app' AND (a.attacl IS NOT NULL OR a.attoptions IS NOT NULL OR a.attstattarget > 0) ORDER BY 1`,
    routines: `SELECT p.oid::regprocedure::text, pg_get_userbyid(p.proowner), ${items('coalesce(p.proacl, acldefault(\'f\', p.proowner))', 'p.proowner')}
                 FROM pg_proc p WHERE p.pronamespace = 'app'::regnamespace ORDER BY 1`,
    types: `SELECT t.typname, pg_get_userbyid(t.typowner), ${items('coalesce(t.typacl, acldefault(\'T\', t.typowner))', 't.typowner')}
              FROM pg_type t WHERE t.typnamespace = 'app'::regnamespace
                AND (t.typtype IN ('e', 'd') OR (t.typtype = 'c' AND (SELECT relkind FROM pg_class WHERE oid = t.typrelid) = 'c')) ORDER BY 1`,
    schemas: `SELECT n.nspname, pg_get_userbyid(n.nspowner), ${items('n.nspacl', 'n.nspowner')} FROM pg_namespace n WHERE n.nspname IN ('app', 'Odd Schema') ORDER BY 1`,
    defaultPrivileges: `SELECT pg_get_userbyid(d.defaclrole), d.defaclnamespace::regnamespace::text, d.defaclobjtype, ${items('d.defaclacl', 'd.defaclrole')}
                          FROM pg_default_acl d ORDER BY 1, 2, 3`,
    comments: `SELECT o.type, o.identity, d.description FROM pg_description d, pg_identify_object(d.classoid, d.objoid, d.objsubid) o
                WHERE d.objoid >= 16384 AND (o.schema IN ('app', '"Odd Schema"') OR o.identity LIKE '%app.%' OR o.identity LIKE '%"Odd Schema"%'
                                              OR o.type IN ('schema', 'extension')) ORDER BY 1, 2`,
    policies: `SELECT policyname, tablename, permissive, roles::text, cmd, qual, with_check FROM pg_policies ORDER BY 1`,
    rules: `SELECT r.rulename, r.ev_class::regclass::text, r.ev_enabled, pg_get_ruledef(r.oid) FROM pg_rewrite r WHERE r.rulename <> '_RETURN' AND r.oid >= 16384 ORDER BY 1`,
    statistics: `SELECT s.stxname, pg_get_statisticsobjdef(s.oid), nullif(s.stxstattarget, -1) FROM pg_statistic_ext s ORDER BY 1`,
    indexStatistics: `SELECT a.attrelid::regclass::text, a.attnum, a.attstattarget FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
                       WHERE c.relkind = 'i' AND c.relnamespace = 'app'::regnamespace AND a.attstattarget > 0 ORDER BY 1, 2`,
  };
  const client = await c.connect(database);
  try {
    const snapshot: Record<string, unknown[]> = {};
    for (const [part, sql] of Object.entries(queries)) snapshot[part] = (await client.query({ text: sql, rowMode: 'array' })).rows.map((r) => (r.length === 1 ? r[0] : r));
    return snapshot;
  } finally {
    await client.end();
  }
}

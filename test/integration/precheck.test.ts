import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runPrecheck, type CheckResult } from '../../engine/precheck/index.js';
import { parseSpec } from '../../engine/spec/index.js';
import { startClusters, type LocalCluster } from '../../local/dev/cluster.js';
import { repositoryRoot, runLocalWorkflow } from '../../local/runner/index.js';
import { DefaultSecretsProvider } from '../../platform/secrets/index.js';
import { scratchDir } from '../support/clusters.js';

let pg13: LocalCluster;
let pg15Replica: LocalCluster;
let pg17: LocalCluster;
let pg18: LocalCluster;
const scratch = scratchDir('precheck-test');
const secrets = new DefaultSecretsProvider();

beforeAll(async () => {
  [pg13, pg15Replica, pg17, pg18] = await startClusters([
    { major: 13, label: 'source13' },
    { major: 15, label: 'replica15', settings: { wal_level: 'replica' } },
    { major: 17, label: 'target17' },
    { major: 18, label: 'target18' },
  ]);
  await Promise.all([pg13, pg15Replica, pg17, pg18].map((c) => c.sql('CREATE TABLE items (id int PRIMARY KEY, region text)')));
});

afterAll(async () => {
  await Promise.all([pg13, pg15Replica, pg17, pg18].map((c) => c?.stop()));
  scratch.remove();
});

const pair = (source: LocalCluster, target: LocalCluster, mode: 'full' | 'full+cdc' = 'full+cdc', extra: object = {}) => ({
  name: 'precheck-test',
  mode,
  source: { secret: scratch.secretFor(`source-${source.major}`, source) },
  target: { secret: scratch.secretFor(`target-${target.major}`, target) },
  ...extra,
});
const precheck = (spec: object) => runPrecheck(parseSpec(spec), secrets);

const byId = (checks: CheckResult[]) => Object.fromEntries(checks.map((c) => [c.id, c]));

describe('precheck on real clusters', () => {
  it('passes every check on a proper pair (13 → 17, CDC requested)', async () => {
    const report = await precheck(pair(pg13, pg17));
    expect(report.ok).toBe(true);
    expect(report.checks.map((c) => [c.id, c.status])).toEqual([
      ['source.connect', 'pass'],
      ['target.connect', 'pass'],
      ['server.versions', 'pass'],
      ['source.selection', 'pass'],
      ['source.privileges', 'pass'],
      ['source.reg_values', 'pass'],
      ['schema.not_migrated', 'pass'],
      ['source.large_objects', 'pass'],
      ['source.materialized_views', 'pass'],
      ['source.unlogged_tables', 'pass'],
      ['source.replica_triggers', 'pass'],
      ['schema.target_version', 'pass'],
      ['target.session_replication_role', 'pass'],
      ['source.wal_level', 'pass'],
      ['source.replication_slots', 'pass'],
      ['source.replication_privilege', 'pass'],
      ['source.replica_identity', 'pass'],
      ['source.ddl_capture', 'pass'],
      ['target.security', 'pass'],
    ]);
    expect(byId(report.checks)['server.versions']!.message).toBe('Source PostgreSQL 13 → target PostgreSQL 17.');
  });

  it('says whether the source user may capture schema changes: fails cdc.ddl "replicate" without the privilege, with the remedy; warns for "pause"', async () => {
    await pg13.sql("CREATE ROLE mover LOGIN REPLICATION PASSWORD 'mover-pw'; GRANT SELECT ON items TO mover");
    const mover = { source: { secret: scratch.secretFor('source-13-mover', pg13, { username: 'mover', password: 'mover-pw' }) } };
    const replicate = byId((await precheck(pair(pg13, pg17, 'full+cdc', mover))).checks)['source.ddl_capture']!;
    expect(replicate.status).toBe('fail');
    expect(replicate.message).toBe(
      'User mover on the source may not create event triggers (superuser, or rds_superuser on RDS), which cdc.ddl "replicate" needs to capture schema changes.',
    );
    expect(replicate.remediation).toContain('rds_superuser');
    expect(replicate.remediation).toContain('cdc.ddl to "pause" or "error"');
    const pause = byId((await precheck(pair(pg13, pg17, 'full+cdc', { ...mover, cdc: { ddl: 'pause' } }))).checks)['source.ddl_capture']!;
    expect(pause.status).toBe('warn');
    expect(pause.message).toContain('schema changes on the source will not be detected (cdc.ddl "pause")');
  });

  it('with cutover.fenceSource, says whether the source user may fence the source at cutover, with the GRANTs to run', async () => {
    await pg13.sql('CREATE DATABASE fencing');
    await pg13.sql('CREATE TABLE items (id int PRIMARY KEY)', 'fencing');
    await pg13.sql("CREATE ROLE fencer LOGIN REPLICATION PASSWORD 'fencer-pw'");
    await pg13.sql('GRANT SELECT ON items TO fencer', 'fencing');
    const owner = pg13.connection.username;
    const fencer = { secret: scratch.secretFor('source-13-fencer', pg13, { username: 'fencer', password: 'fencer-pw' }), database: 'fencing' };
    const spec = pair(pg13, pg17, 'full+cdc', { source: fencer, cutover: { fenceSource: true } });
    expect(byId((await precheck(spec)).checks)['source.fence']).toEqual({
      id: 'source.fence',
      status: 'fail',
      message:
        "cutover.fenceSource: the source user cannot fence the source at cutover: no TRIGGER privilege on 1 selected table(s): public.items; no CREATE privilege on database fencing (for the fence's schema pgferry_fence); not the owner of database fencing (ALTER DATABASE … SET default_transaction_read_only needs it).",
      remediation: `On the source, run: GRANT TRIGGER ON public.items TO fencer; GRANT CREATE ON DATABASE fencing TO fencer; GRANT ${owner} TO fencer; Or set cutover.fenceSource to false (writes after cutover are then not refused).`,
    });
    // Without fenceSource the check is not made.
    expect(byId((await precheck({ ...spec, cutover: {} })).checks)['source.fence']).toBeUndefined();
    await pg13.sql(`GRANT TRIGGER ON public.items TO fencer; GRANT CREATE ON DATABASE fencing TO fencer; GRANT ${owner} TO fencer`, 'fencing');
    expect(byId((await precheck(spec)).checks)['source.fence']).toMatchObject({ status: 'pass' });
  });

  it('passes 13 → 18', async () => {
    const report = await precheck(pair(pg13, pg18));
    expect(report.ok).toBe(true);
    expect(byId(report.checks)['target.connect']!.message).toContain('PostgreSQL 18.');
  });

  it('fails a CDC run on tables without primary key or replica identity, naming them, and passes once they are REPLICA IDENTITY FULL', async () => {
    await pg13.sql('CREATE DATABASE ident');
    await pg13.sql('CREATE TABLE logs (at timestamptz, line text); CREATE TABLE keyed (id int PRIMARY KEY); CREATE TABLE "odd name" (v int)', 'ident');
    const spec = pair(pg13, pg17, 'full+cdc', { source: { secret: scratch.secretFor('source-13', pg13), database: 'ident' } });
    const check = byId((await precheck(spec)).checks)['source.replica_identity']!;
    expect(check.status).toBe('fail');
    expect(check.message).toBe(
      '2 selected table(s) have no primary key (or only a DEFERRABLE one, which cannot identify rows) and no replica identity: public.logs, public.odd name. Once published, the source refuses UPDATE and DELETE on them.',
    );
    expect(check.remediation).toContain('REPLICA IDENTITY FULL');
    await pg13.sql('ALTER TABLE logs REPLICA IDENTITY FULL; ALTER TABLE "odd name" REPLICA IDENTITY FULL', 'ident');
    const fixed = byId((await precheck(spec)).checks)['source.replica_identity']!;
    expect(fixed).toMatchObject({ status: 'pass', message: 'Every selected table has a primary key or replica identity (2 with REPLICA IDENTITY FULL, matched on all old values).' });
  });

  it('names before anything is written what would fail or arrive different: privileges, reg* values, unlogged tables, deferrable keys, replica triggers, objects left out', async () => {
    await pg13.sql('CREATE DATABASE fidelity');
    await pg13.sql(`CREATE ROLE reader LOGIN PASSWORD 'reader-pw'; CREATE ROLE writer LOGIN PASSWORD 'writer-pw'`);
    await pg13.sql(
      `CREATE SCHEMA app; CREATE SCHEMA hidden;
       CREATE TABLE hidden.thing (id int); CREATE TYPE hidden.kind AS ENUM ('a');
       CREATE TABLE app.refs (id int PRIMARY KEY, r regclass, ts regtype[], who regrole);
       CREATE TABLE app.left_out (id int);
       INSERT INTO app.refs VALUES (1, 'hidden.thing', '{hidden.kind,int4}', 'writer'), (2, 'pg_class', '{app.refs}', NULL),
                                   (3, 'app.left_out', NULL, NULL), (4, 'app.refs_pkey', NULL, NULL);
       CREATE TABLE app.deferred (id int PRIMARY KEY DEFERRABLE);
       CREATE UNLOGGED TABLE app.scratch (id int PRIMARY KEY);
       CREATE TABLE app.audit (at timestamptz DEFAULT now(), what text);
       CREATE FUNCTION app.audit() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN INSERT INTO app.audit (what) VALUES (TG_OP); RETURN NEW; END $$;
       CREATE TRIGGER audit_always AFTER INSERT ON app.refs FOR EACH ROW EXECUTE FUNCTION app.audit();
       ALTER TABLE app.refs ENABLE ALWAYS TRIGGER audit_always;
       CREATE PUBLICATION app_pub FOR TABLE app.refs;
       CREATE FUNCTION app.fact(bigint) RETURNS numeric LANGUAGE sql AS 'SELECT $1::numeric';
       CREATE OPERATOR app.!! (LEFTARG = bigint, FUNCTION = app.fact);
       GRANT USAGE ON SCHEMA app TO reader; GRANT SELECT ON app.refs, app.deferred TO reader;`,
      'fidelity',
    );
    await pg17.sql(`CREATE ROLE applier LOGIN PASSWORD 'applier-pw'`);
    const spec = pair(pg13, pg17, 'full+cdc', {
      source: { secret: scratch.secretFor('fidelity-reader', pg13, { username: 'reader', password: 'reader-pw' }), database: 'fidelity' },
      target: { secret: scratch.secretFor('fidelity-applier', pg17, { username: 'applier', password: 'applier-pw' }) },
      objects: { include: [{ schema: 'app', tables: ['*'] }], exclude: [{ schema: 'app', tables: ['left_out'] }] },
    });
    const checks = byId((await precheck(spec)).checks);
    expect(checks['source.privileges']).toMatchObject({ status: 'fail' });
    expect(checks['source.privileges']!.message).toBe('The source user may not read 2 object(s) the migration copies: table app.audit (SELECT), table app.scratch (SELECT).');
    expect(checks['source.reg_values']!.status).toBe('fail');
    // Named: a table of another schema and an unselected table of a selected one; an index of a selected table is fine.
    expect(checks['source.reg_values']!.message).toContain('app.refs.r (regclass): app.left_out, hidden.thing;');
    expect(checks['source.reg_values']!.message).toContain('app.refs.ts (regtype): hidden.kind');
    expect(checks['source.reg_values']!.message).toContain('role writer, named in app.refs.who, does not exist on the target');
    expect(checks['source.unlogged_tables']).toMatchObject({ status: 'fail' });
    expect(checks['source.unlogged_tables']!.message).toContain('app.scratch');
    expect(checks['source.replica_identity']!.message).toContain('app.deferred');
    expect(checks['source.replica_triggers']).toMatchObject({ status: 'warn' });
    expect(checks['source.replica_triggers']!.message).toContain('app.refs.audit_always (always)');
    expect(checks['source.replica_triggers']!.message).toContain('created disabled and get their source state at cutover');
    expect(checks['schema.not_migrated']).toMatchObject({ status: 'warn' });
    expect(checks['schema.not_migrated']!.message).toContain('publication app_pub: publications are not migrated');
    expect(checks['schema.target_version']).toMatchObject({ status: 'fail' });
    expect(checks['schema.target_version']!.message).toContain('operator app.!!(bigint, NONE)');
    expect(checks['target.session_replication_role']).toMatchObject({ status: 'fail' });
    expect(checks['target.session_replication_role']!.remediation).toContain('GRANT SET ON PARAMETER session_replication_role TO applier');
    expect(JSON.stringify(checks)).not.toMatch(/reader-pw|applier-pw/);
  });

  it('with cutover.reverse, checks replication origins on both sides and a slot on the target, failing a target without logical WAL', async () => {
    const reverse = { cutover: { fenceSource: true, reverse: true } };
    const ok = await precheck(pair(pg13, pg17, 'full+cdc', reverse));
    expect(ok.ok).toBe(true);
    expect(ok.checks.filter((c) => /replication_origins|reverse_slot/.test(c.id)).map((c) => [c.id, c.status])).toEqual([
      ['source.replication_origins', 'pass'],
      ['target.replication_origins', 'pass'],
      ['target.reverse_slot', 'pass'],
    ]);
    const replicaTarget = byId((await precheck(pair(pg13, pg15Replica, 'full+cdc', reverse))).checks)['target.reverse_slot']!;
    expect(replicaTarget.status).toBe('fail');
    expect(replicaTarget.message).toBe('cutover.reverse arms a logical replication slot on the target at cutover, but on the target wal_level is "replica" (needs "logical").');
    expect(replicaTarget.remediation).toContain('or set cutover.reverse to false');
  });

  it('fails on wal_level=replica when CDC is requested, with the remedy', async () => {
    const report = await precheck(pair(pg15Replica, pg17));
    expect(report.ok).toBe(false);
    const walLevel = byId(report.checks)['source.wal_level']!;
    expect(walLevel.status).toBe('fail');
    expect(walLevel.message).toBe('wal_level is "replica" on the source; change data capture needs "logical".');
    expect(walLevel.remediation).toContain('wal_level = logical');
  });

  it('does not check wal_level for a full load only', async () => {
    const report = await precheck(pair(pg15Replica, pg17, 'full'));
    expect(report.ok).toBe(true);
    expect(report.checks.map((c) => c.id)).not.toContain('source.wal_level');
  });

  it('fails when the target is older than the source', async () => {
    const report = await precheck(pair(pg17, pg15Replica, 'full'));
    const versions = byId(report.checks)['server.versions']!;
    expect(versions.status).toBe('fail');
    expect(versions.message).toBe("The target runs PostgreSQL 15, older than the source's PostgreSQL 17.");
    expect(versions.remediation).toContain('PostgreSQL 17 or later');
  });

  it('fails on a selection that names no table, a missing column or a where clause that does not compile', async () => {
    const report = await precheck(
      pair(pg13, pg17, 'full', {
        objects: {
          tables: {
            'public.items': { where: 'regoin = 1', excludeColumns: ['colour'] },
            'public.nothing': { where: 'true' },
          },
        },
      }),
    );
    const selection = byId(report.checks)['source.selection']!;
    expect(selection.status).toBe('fail');
    expect(selection.message).toContain('objects.tables["public.nothing"] names no selected table');
    expect(selection.message).toContain('objects.tables["public.items"]: no column "colour"');
    expect(selection.message).toContain('objects.tables["public.items"].where: column "regoin" does not exist');
    const nothing = await precheck(pair(pg13, pg17, 'full', { objects: { include: [{ schema: 'sales' }] } }));
    expect(byId(nothing.checks)['source.selection']).toMatchObject({ status: 'fail', message: 'The spec selects no table on the source.' });
  });

  it('reports a wrong password as a failed connection check without revealing any password', async () => {
    const spec = pair(pg13, pg17);
    spec.source.secret = scratch.secretFor('wrong-password', pg13, { password: 'not-the-password' });
    const report = await precheck(spec);
    const connect = byId(report.checks)['source.connect']!;
    expect(connect.status).toBe('fail');
    expect(connect.message).toContain('password authentication failed for user "postgres"');
    expect(connect.message).toContain(spec.source.secret);
    expect(byId(report.checks)['source.wal_level']!.status).toBe('skip');
    const everything = JSON.stringify(report);
    expect(everything).not.toContain('not-the-password');
    expect(everything).not.toContain(pg13.connection.password);
  });
});

describe('the workflow through the local runner', () => {
  it('stops at Precheck with the failed check and its remedy as a readable cause, without secrets', async () => {
    const result = await runLocalWorkflow(pair(pg17, pg15Replica, 'full'));
    expect(result.status).toBe('FAILED');
    expect(result.error).toBe('PrecheckFailed');
    expect(result.cause).toContain("server.versions: The target runs PostgreSQL 15, older than the source's PostgreSQL 17.");
    expect(result.cause).toContain('Fix: Migrate to the same or a newer major version');
    expect(result.cause).not.toContain(pg15Replica.connection.password);
    expect(result.cause).not.toContain(pg17.connection.password);
  });

  it('refuses an invalid spec before touching a database', async () => {
    const result = await runLocalWorkflow(pair(pg13, pg17, 'full+cdc', { mapping: { nameCase: 'title' } }));
    expect(result).toMatchObject({ status: 'FAILED', error: 'SpecInvalid' });
    expect(result.cause).toContain('mapping.nameCase');
  });
});

describe('pgferry precheck (the installed command)', () => {
  const cli = (...args: string[]) =>
    spawnSync(process.execPath, [join(repositoryRoot, 'bin', 'pgferry.js'), ...args], { encoding: 'utf8', timeout: 60_000 });

  it('exits 1 with the failed check and its remediation on wal_level=replica', () => {
    const spec = scratch.writeJson('replica-spec.json', pair(pg15Replica, pg17));
    const result = cli('precheck', spec);
    expect(result.status).toBe(1);
    expect(result.stdout).toMatch(/✗ source\.wal_level\s+wal_level is "replica" on the source/);
    expect(result.stdout).toContain('Fix: Set wal_level = logical');
    expect(result.stdout).toContain('Precheck failed.');
  });

  it('exits 0 when every check passes', () => {
    const spec = scratch.writeJson('good-spec.json', pair(pg13, pg17));
    const result = cli('precheck', spec);
    expect(result.stderr).toBe('');
    expect(result.status).toBe(0);
    expect(result.stdout).toContain('All checks passed.');
  });
});

/**
 * Precheck: what must hold before a migration starts. One check = one function returning
 * {id, status, message, remediation}; a check that needs a connection that failed is skipped.
 */
import type pg from 'pg';
import { listTables, parseTableKey, TABLE_KEY, tableKey, type TableRef } from '../catalog/tables.js';
import { messageOf, oneStatement, quoteTable } from '../sql.js';
import { whereCondition, whereProblem } from '../spec/where.js';
import { connect, describeEndpoint, resolveEndpoint, SOURCE_READ_SESSION_SQL, type Endpoint, type SecretsProvider, type Side } from '../connect/index.js';
import { PgferryError } from '../errors.js';
import type { MigrationSpec } from '../spec/index.js';
import { checkDdlCapture } from './ddl-capture.js';
import { checkReverse } from './reverse.js';
import { checkLargeObjects, checkMaterializedViews } from './large-objects.js';
import { checkSecurity } from './security.js';
import { checkFencePrivileges } from './fence.js';
import { checkCdcFilters, checkDroppedColumns } from './filters.js';
import { checkMapping } from './mapping.js';
import { NameMap } from '../schema/mapping.js';
import { replicationNames } from '../cdc/slot.js';
import { hasFilters } from '../cdc/row-filter.js';
import {
  checkNotMigrated,
  readSourceSelection,
  type SourceSelection,
  checkRegValues,
  checkReplicaTriggers,
  checkSourcePrivileges,
  checkTargetCanCreate,
  checkTargetReplicationRole,
  checkUnloggedTables,
} from './fidelity.js';

export type CheckStatus = 'pass' | 'warn' | 'fail' | 'skip';

export interface CheckResult {
  id: string;
  status: CheckStatus;
  message: string;
  remediation?: string;
}

export interface PrecheckReport {
  ok: boolean;
  checks: CheckResult[];
}

interface ServerFacts {
  endpoint: Endpoint;
  client: pg.Client;
  versionNum: number;
  version: string;
}

const wantsCdc = (spec: Pick<MigrationSpec, 'mode'>) => spec.mode !== 'full';

async function openSide(
  side: Side,
  spec: Pick<MigrationSpec, 'source' | 'target'>,
  secrets: SecretsProvider,
): Promise<{ facts?: ServerFacts; check: CheckResult }> {
  const id = `${side}.connect`;
  try {
    const endpoint = await resolveEndpoint(side, spec[side], secrets);
    const client = await connect(endpoint, { retryWindowMs: 10_000, applicationName: 'pgferry-precheck' });
    const { rows } = await client.query<{ num: string; version: string }>(
      "SELECT current_setting('server_version_num') AS num, current_setting('server_version') AS version",
    );
    const facts = { endpoint, client, versionNum: Number(rows[0]!.num), version: rows[0]!.version };
    return { facts, check: { id, status: 'pass', message: `Connected to the ${describeEndpoint(endpoint)}, PostgreSQL ${facts.version}.` } };
  } catch (error) {
    const message = error instanceof PgferryError ? error.message : `Cannot connect to the ${side}: ${String(error)}`;
    return {
      check: {
        id,
        status: 'fail',
        message,
        remediation: `Make the ${side} reachable from pgferry with the credentials in its secret (${spec[side].secret}).`,
      },
    };
  }
}

const major = (versionNum: number) => Math.floor(versionNum / 10000);

function checkVersions(source: ServerFacts, target: ServerFacts): CheckResult {
  const id = 'server.versions';
  const [from, to] = [major(source.versionNum), major(target.versionNum)];
  if (to < from) {
    return {
      id,
      status: 'fail',
      message: `The target runs PostgreSQL ${to}, older than the source's PostgreSQL ${from}.`,
      remediation: `Migrate to the same or a newer major version: use a target running PostgreSQL ${from} or later.`,
    };
  }
  return { id, status: 'pass', message: `Source PostgreSQL ${from} → target PostgreSQL ${to}.` };
}

async function setting(client: pg.Client, name: string): Promise<string> {
  const { rows } = await client.query<{ value: string }>('SELECT current_setting($1) AS value', [name]);
  return rows[0]!.value;
}

async function checkWalLevel(source: ServerFacts): Promise<CheckResult> {
  const id = 'source.wal_level';
  const walLevel = await setting(source.client, 'wal_level');
  if (walLevel === 'logical') return { id, status: 'pass', message: 'wal_level is logical on the source.' };
  return {
    id,
    status: 'fail',
    message: `wal_level is "${walLevel}" on the source; change data capture needs "logical".`,
    remediation:
      'Set wal_level = logical on the source and restart it (ALTER SYSTEM SET wal_level = logical; on RDS/Aurora set rds.logical_replication = 1 in the parameter group and reboot), or use "mode": "full".',
  };
}

/** The migration's own slot (a paused run's, which a resume goes on with) needs no free one. */
async function checkReplicationSlots(source: ServerFacts, ownSlot: string): Promise<CheckResult> {
  const id = 'source.replication_slots';
  const { rows } = await source.client.query<{ max: number; used: number; senders: number; walsenders_used: number }>(
    `SELECT current_setting('max_replication_slots')::int AS max,
            (SELECT count(*)::int FROM pg_replication_slots WHERE slot_name <> $1) AS used,
            current_setting('max_wal_senders')::int AS senders,
            (SELECT count(*)::int FROM pg_stat_replication) AS walsenders_used`,
    [ownSlot],
  );
  const { max, used, senders, walsenders_used } = rows[0]!;
  if (max - used < 1 || senders - walsenders_used < 1) {
    return {
      id,
      status: 'fail',
      message: `The source has ${max - used} free replication slot(s) of ${max} and ${senders - walsenders_used} free WAL sender(s) of ${senders}; CDC needs one of each.`,
      remediation: 'Raise max_replication_slots and max_wal_senders on the source (restart needed), or drop unused slots.',
    };
  }
  return { id, status: 'pass', message: `${max - used} of ${max} replication slots and ${senders - walsenders_used} of ${senders} WAL senders free.` };
}

async function checkReplicationPrivilege(source: ServerFacts): Promise<CheckResult> {
  const id = 'source.replication_privilege';
  const { rows } = await source.client.query<{ allowed: boolean }>(
    `SELECT r.rolsuper OR r.rolreplication
            OR pg_has_role(r.oid, (SELECT oid FROM pg_roles WHERE rolname = 'rds_replication'), 'member') AS allowed
       FROM pg_roles r WHERE r.rolname = current_user`,
  );
  if (rows[0]?.allowed) return { id, status: 'pass', message: `${source.endpoint.credentials.username} may create replication slots.` };
  return {
    id,
    status: 'fail',
    message: `User ${source.endpoint.credentials.username} on the source may not open replication connections.`,
    remediation: `ALTER ROLE ${source.endpoint.credentials.username} REPLICATION; (on RDS/Aurora: GRANT rds_replication TO ${source.endpoint.credentials.username};)`,
  };
}

/** The selection names real tables, and its per-table filters and columns make sense on the source. */
async function checkSelection(source: ServerFacts, objects: MigrationSpec['objects']): Promise<CheckResult> {
  const id = 'source.selection';
  const tables = await listTables(source.client, objects);
  if (tables.length === 0) {
    return {
      id,
      status: 'fail',
      message: 'The spec selects no table on the source.',
      remediation: 'Check objects.include and objects.exclude: schemas and table globs are case-sensitive.',
    };
  }
  const problems: string[] = [];
  for (const [key, options] of Object.entries(objects.tables)) {
    const named = TABLE_KEY.test(key) ? tableKey(parseTableKey(key)) : key;
    const table = tables.find((t) => tableKey(t) === named);
    if (!table) {
      problems.push(`objects.tables["${key}"] names no selected table`);
      continue;
    }
    const names = new Set(table.columns.map((c) => c.name));
    const unknown = [...(options.columns ?? []), ...(options.excludeColumns ?? [])].filter((c) => !names.has(c));
    if (unknown.length > 0) problems.push(`objects.tables["${key}"]: no column ${unknown.map((c) => `"${c}"`).join(', ')}`);
    if (options.where) {
      const problem = await whereFilterProblem(source.client, table, options.where);
      if (problem) problems.push(`objects.tables["${key}"].where: ${problem}`);
    }
  }
  if (problems.length > 0) {
    return {
      id,
      status: 'fail',
      message: problems.join('; '),
      remediation: 'Fix objects.tables in the spec: a where filter is one boolean expression over the table\'s columns (schema-qualify your own functions), that only reads.',
    };
  }
  return { id, status: 'pass', message: `${tables.filter((t) => t.kind === 'table').length} tables selected.` };
}

/**
 * What is wrong with a table's `where` filter, or undefined. It must be one expression
 * (whereProblem), compile as the table's WHERE clause in the load's session settings, and
 * evaluate on a row without writing. The server runs it in a READ ONLY transaction that is
 * rolled back, through the extended protocol (one statement only): nothing it does stays.
 */
async function whereFilterProblem(client: pg.Client, table: TableRef, where: string): Promise<string | undefined> {
  const problem = whereProblem(where);
  if (problem) return problem;
  const condition = whereCondition(where, table);
  await client.query('BEGIN READ ONLY');
  try {
    await client.query(SOURCE_READ_SESSION_SQL);
    await client.query(oneStatement({ text: `EXPLAIN SELECT 1 FROM ONLY ${quoteTable(table)} WHERE ${condition}` }));
    // EXPLAIN does not run the filter: evaluating it on one row shows one that fails or writes.
    await client.query(oneStatement({ text: `SELECT ${condition} FROM ONLY ${quoteTable(table)} LIMIT 1` }));
    return undefined;
  } catch (error) {
    return messageOf(error);
  } finally {
    // Also undoes the session settings.
    await client.query('ROLLBACK');
  }
}

/**
 * With a publication that publishes updates and deletes, the source itself refuses UPDATE and
 * DELETE on a table without a replica identity: the migration would break the application.
 */
async function checkReplicaIdentity(source: ServerFacts, objects: MigrationSpec['objects']): Promise<CheckResult> {
  const id = 'source.replica_identity';
  const tables = (await listTables(source.client, objects)).filter((t) => t.kind === 'table');
  const { rows } = await source.client.query<{ name: string; identity: string }>(
    `SELECT format('%s.%s', n.nspname, c.relname) AS name, c.relreplident AS identity
       FROM unnest($1::text[], $2::text[]) AS t(schema, name)
       JOIN pg_namespace n ON n.nspname = t.schema
       JOIN pg_class c ON c.relnamespace = n.oid AND c.relname = t.name
      WHERE c.relreplident = 'n'
         -- a DEFERRABLE primary key cannot identify rows: once published, the table has no replica identity
         OR c.relreplident = 'd' AND NOT EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid AND i.indisprimary AND i.indimmediate)
      ORDER BY 1`,
    [tables.map((t) => t.schema), tables.map((t) => t.name)],
  );
  const full = await source.client.query<{ count: number }>(
    `SELECT count(*)::int AS count FROM unnest($1::text[], $2::text[]) AS t(schema, name)
       JOIN pg_namespace n ON n.nspname = t.schema JOIN pg_class c ON c.relnamespace = n.oid AND c.relname = t.name
      WHERE c.relreplident = 'f'`,
    [tables.map((t) => t.schema), tables.map((t) => t.name)],
  );
  if (rows.length > 0) {
    const names = rows.map((r) => r.name);
    return {
      id,
      status: 'fail',
      message: `${names.length} selected table(s) have no primary key (or only a DEFERRABLE one, which cannot identify rows) and no replica identity: ${names.join(', ')}. Once published, the source refuses UPDATE and DELETE on them.`,
      remediation: `Add a primary key (not DEFERRABLE), or run ALTER TABLE … REPLICA IDENTITY FULL (or USING INDEX on a unique, non-deferrable index of NOT NULL columns) on each (with FULL pgferry matches rows on all their old values), or exclude them from objects.`,
    };
  }
  const fullCount = full.rows[0]!.count;
  return {
    id,
    status: 'pass',
    message: `Every selected table has a primary key or replica identity${fullCount ? ` (${fullCount} with REPLICA IDENTITY FULL, matched on all old values)` : ''}.`,
  };
}

function skipped(id: string, reason: string): CheckResult {
  return { id, status: 'skip', message: `Skipped: ${reason}.` };
}

/** Runs a check; one that cannot run (a query refused) fails with the reason, and the others still run. */
async function guarded(id: string, check: () => Promise<CheckResult>): Promise<CheckResult> {
  try {
    return await check();
  } catch (error) {
    return { id, status: 'fail', message: `The check could not run: ${(error as Error).message}.`, remediation: 'Fix the cause above, then run precheck again.' };
  }
}

export async function runPrecheck(spec: MigrationSpec, secrets: SecretsProvider): Promise<PrecheckReport> {
  const [source, target] = await Promise.all([openSide('source', spec, secrets), openSide('target', spec, secrets)]);
  const checks: CheckResult[] = [source.check, target.check];
  try {
    checks.push(
      source.facts && target.facts
        ? checkVersions(source.facts, target.facts)
        : skipped('server.versions', 'needs connections to both sides'),
      source.facts ? await checkSelection(source.facts, spec.objects) : skipped('source.selection', 'no connection to the source'),
    );
    // The selection and its schema plan are read once, by the first check that needs them.
    let selection: Promise<SourceSelection> | undefined;
    const selected = (client: pg.Client) => (selection ??= readSourceSelection(client, spec));
    type SourceCheck = [string, (client: pg.Client) => Promise<CheckResult>];
    const cdcOnly: SourceCheck[] = [
      ['source.unlogged_tables', async (client) => checkUnloggedTables(client, await selected(client))],
      ['source.replica_triggers', (client) => checkReplicaTriggers(client, spec)],
    ];
    const sourceChecks: SourceCheck[] = [
      ['source.privileges', async (client) => checkSourcePrivileges(client, await selected(client))],
      ['source.reg_values', async (client) => checkRegValues(client, target.facts?.client, spec, await selected(client))],
      ['schema.not_migrated', async (client) => checkNotMigrated(await selected(client))],
      ['source.large_objects', (client) => checkLargeObjects(client, spec.mode)],
      ['source.materialized_views', (client) => checkMaterializedViews(client, spec.objects)],
      ...(spec.objects.excludedColumns === 'drop' ? [['schema.dropped_columns', (client) => checkDroppedColumns(client, spec)] satisfies SourceCheck] : []),
      ...(NameMap.of(spec).identity ? [] : [['schema.mapping', async (client) => checkMapping(client, target.facts?.client, spec, await selected(client))] satisfies SourceCheck]),
      ...(wantsCdc(spec) ? cdcOnly : []),
      ...(wantsCdc(spec) && spec.cutover?.fenceSource ? [['source.fence', async (client) => checkFencePrivileges(client, await selected(client))] satisfies SourceCheck] : []),
    ];
    for (const [id, check] of sourceChecks) checks.push(source.facts ? await guarded(id, () => check(source.facts!.client)) : skipped(id, 'no connection to the source'));
    checks.push(
      source.facts && target.facts
        ? await guarded('schema.target_version', async () =>
            checkTargetCanCreate(source.facts!.client, await selected(source.facts!.client), target.facts!.versionNum),
          )
        : skipped('schema.target_version', 'needs connections to both sides'),
    );
    const roleCheck = 'target.session_replication_role';
    checks.push(
      target.facts
        ? await guarded(roleCheck, () => checkTargetReplicationRole(target.facts!.client, target.facts!.endpoint.credentials.username))
        : skipped(roleCheck, 'no connection to the target'),
    );
    if (wantsCdc(spec)) {
      const cdcChecks = [
        ['source.wal_level', checkWalLevel],
        ['source.replication_slots', (facts: ServerFacts) => checkReplicationSlots(facts, replicationNames({ name: spec.name, cdc: spec.cdc ?? {} }).slotName)],
        ['source.replication_privilege', checkReplicationPrivilege],
      ] as const;
      for (const [id, check] of cdcChecks) {
        checks.push(source.facts ? await check(source.facts) : skipped(id, 'no connection to the source'));
      }
      checks.push(source.facts ? await checkReplicaIdentity(source.facts, spec.objects) : skipped('source.replica_identity', 'no connection to the source'));
      if (hasFilters(spec.objects)) {
        checks.push(
          source.facts ? await guarded('source.filter_identity', () => checkCdcFilters(source.facts!.client, spec.objects)) : skipped('source.filter_identity', 'no connection to the source'),
        );
      }
      checks.push(
        source.facts
          ? await checkDdlCapture({ client: source.facts.client, user: source.facts.endpoint.credentials.username }, spec.cdc?.ddl ?? 'replicate')
          : skipped('source.ddl_capture', 'no connection to the source'),
      );
    }
    // cutover.reverse (engine/cutover/reverse.ts): a slot on the target, replication origins on both sides.
    if (wantsCdc(spec) && spec.cutover?.reverse) {
      if (source.facts && target.facts) {
        const sides = [source.facts, target.facts].map((facts) => ({ client: facts.client, user: facts.endpoint.credentials.username }));
        checks.push(...(await checkReverse(sides[0]!, sides[1]!)));
      } else {
        checks.push(skipped('target.reverse_slot', 'needs connections to both sides'));
      }
    }
    checks.push(
      source.facts && target.facts
        ? await guarded('target.security', () => checkSecurity(source.facts!.client, target.facts!.client, spec))
        : skipped('target.security', 'needs connections to both sides'),
    );
  } finally {
    await Promise.all([source.facts?.client.end(), target.facts?.client.end()].map((p) => p?.catch(() => undefined)));
  }
  return { ok: checks.every((c) => c.status !== 'fail'), checks };
}

export class PrecheckFailedError extends PgferryError {
  constructor(readonly checks: CheckResult[]) {
    const failed = checks.filter((c) => c.status === 'fail');
    super(
      'PrecheckFailed',
      `Precheck failed: ${failed.length} of ${checks.length} checks failed.\n` +
        failed.map((c) => `  ✗ ${c.id}: ${c.message}${c.remediation ? `\n    Fix: ${c.remediation}` : ''}`).join('\n'),
    );
  }
}

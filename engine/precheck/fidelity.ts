/**
 * Precheck of what would otherwise fail mid-run or arrive different: values that name objects
 * the target will not have, tables CDC cannot publish, privileges the load and the applier
 * need, triggers that fire for replicated rows, and every object the schema plan leaves out.
 */
import type pg from 'pg';
import { dataTables, type TableInfo } from '../catalog/tables.js';
import { qualified, quoteIdent, quoteTable } from '../sql.js';
import type { MigrationSpec } from '../spec/index.js';
import { planSchema, selectSchemas, type SchemaPlan } from '../schema/plan.js';
import { readSource } from '../schema/objects.js';
import { userSchemas } from '../schema/definitions.js';
import { replicaTriggers } from '../schema/replica-triggers.js';
import type { CheckResult } from './index.js';

/** The source's selection, read once for every check: the schema plan and the schemas it migrates. */
export interface SourceSelection {
  plan: SchemaPlan;
  schemas: string[];
}

export async function readSourceSelection(source: pg.Client, spec: MigrationSpec): Promise<SourceSelection> {
  return readSource(source, async () => {
    const plan = await planSchema(source, spec);
    return { plan, schemas: selectSchemas(spec, (await userSchemas(source)).map((s) => s.name), plan.tables) };
  });
}

/** The catalog and namespace column behind each reg* type: a value names an object there. */
const REG_TYPES: Record<string, [catalog: string, namespace: string]> = {
  regclass: ['pg_class', 'relnamespace'],
  regtype: ['pg_type', 'typnamespace'],
  regproc: ['pg_proc', 'pronamespace'],
  regprocedure: ['pg_proc', 'pronamespace'],
  regoper: ['pg_operator', 'oprnamespace'],
  regoperator: ['pg_operator', 'oprnamespace'],
  regconfig: ['pg_ts_config', 'cfgnamespace'],
  regdictionary: ['pg_ts_dict', 'dictnamespace'],
  regcollation: ['pg_collation', 'collnamespace'],
  regnamespace: ['pg_namespace', 'oid'],
};

const listed = (names: string[], most = 20) =>
  names.length > most ? `${names.slice(0, most).join(', ')} and ${names.length - most} more` : names.join(', ');

/**
 * reg* columns travel as names: a value naming an object outside the migrated schemas (or a
 * role the target lacks) cannot be read back on the target, and the load would fail there.
 */
export async function checkRegValues(
  source: pg.Client,
  target: pg.Client | undefined,
  spec: MigrationSpec,
  { plan, schemas }: SourceSelection,
): Promise<CheckResult> {
  const id = 'source.reg_values';
  const tables = dataTables(plan.tables);
  // The relations the target will have: the plan's tables, views and sequences (and, below, their indexes).
  const relations = [...plan.tables.map((t) => t.oid), ...plan.nodes.filter((n) => n.key.startsWith('rel:')).map((n) => Number(n.key.slice(4)))];
  const problems: string[] = [];
  const roles = new Map<string, string[]>();
  for (const table of tables) {
    for (const column of table.columns.filter((c) => regTypeOf(c.type))) {
      const type = regTypeOf(column.type)!;
      const values = await unreadableValues(source, table, column.name, column.type.endsWith('[]'), type, { schemas, relations });
      const where = `${qualified(table)}.${column.name}`;
      if (type === 'regrole') for (const role of values) roles.set(role, [...(roles.get(role) ?? []), where]);
      else if (values.length) problems.push(`${where} (${type}): ${listed(values, 5)}`);
    }
  }
  if (roles.size && target && !spec.schema.sync.roles) {
    const { rows } = await target.query<{ name: string }>('SELECT rolname AS name FROM pg_roles WHERE rolname = ANY($1::text[])', [[...roles.keys()]]);
    const present = new Set(rows.map((r) => r.name));
    for (const [role, columns] of roles) if (!present.has(role)) problems.push(`role ${role}, named in ${columns.join(', ')}, does not exist on the target`);
  }
  if (problems.length === 0) return { id, status: 'pass', message: 'Every reg* value names an object the target will have.' };
  return {
    id,
    status: 'fail',
    message: `reg* values name objects the target will not have, so they cannot be read back there: ${problems.join('; ')}.`,
    remediation:
      'Select the schemas of the objects they name (objects.include), create those objects or roles on the target, or leave the column out (objects.tables["schema.table"].excludeColumns).',
  };
}

function regTypeOf(type: string): string | undefined {
  const base = type.replace(/\[\]$/, '');
  return base in REG_TYPES || base === 'regrole' ? base : undefined;
}

/**
 * Distinct values (as text) naming user objects the target will not have: a relation the plan
 * does not create (nor an index of one), another object outside `schemas`; for regrole, the user
 * roles named.
 */
async function unreadableValues(
  source: pg.Client,
  table: TableInfo,
  column: string,
  array: boolean,
  type: string,
  created: { schemas: string[]; relations: number[] },
): Promise<string[]> {
  const value = array ? 'v' : `t.${quoteIdent(column)}`;
  const from = `ONLY ${quoteTable(table)} t${array ? `, unnest(t.${quoteIdent(column)}) v` : ''}`;
  const [catalog, namespace] = REG_TYPES[type] ?? [];
  const outside = `x.${namespace} NOT IN (SELECT oid FROM pg_namespace WHERE nspname = ANY($1::text[]))`;
  const query =
    type === 'regrole'
      ? { text: `SELECT DISTINCT r.rolname AS value FROM ${from} JOIN pg_roles r ON r.oid = ${value}::oid WHERE r.oid >= 16384 ORDER BY 1 LIMIT 100`, values: [] }
      : type === 'regclass'
        ? {
            text: `SELECT DISTINCT ${value}::text AS value FROM ${from} JOIN pg_class x ON x.oid = ${value}::oid
                    WHERE x.oid >= 16384 AND x.oid <> ALL($2::oid[])
                      AND NOT EXISTS (SELECT 1 FROM pg_index i WHERE i.indexrelid = x.oid AND i.indrelid = ANY($2::oid[]))
                      AND (x.relkind <> 'c' OR ${outside}) ORDER BY 1 LIMIT 20`,
            values: [created.schemas, created.relations],
          }
        : {
            text: `SELECT DISTINCT ${value}::text AS value FROM ${from} JOIN ${catalog} x ON x.oid = ${value}::oid WHERE x.oid >= 16384 AND ${outside} ORDER BY 1 LIMIT 20`,
            values: [created.schemas],
          };
  const { rows } = await source.query<{ value: string }>(query);
  return rows.map((r) => r.value);
}

/** The selected tables and sequences the source user cannot read, and the schemas it cannot use. */
export async function checkSourcePrivileges(source: pg.Client, { plan, schemas }: SourceSelection): Promise<CheckResult> {
  const id = 'source.privileges';
  const tables = plan.tables;
  const { rows } = await source.query<{ what: string }>(
    `SELECT 'schema ' || quote_ident(n.nspname) || ' (USAGE)' AS what FROM pg_namespace n
      WHERE n.nspname = ANY($2::text[]) AND NOT has_schema_privilege(n.oid, 'USAGE')
     UNION ALL
     SELECT CASE c.relkind WHEN 'S' THEN 'sequence ' ELSE 'table ' END || format('%I.%I', n.nspname, c.relname) || ' (SELECT)'
       FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
      WHERE (c.oid = ANY($1::oid[]) OR (c.relkind = 'S' AND n.nspname = ANY($2::text[])))
        AND NOT has_table_privilege(c.oid, 'SELECT')
        AND (c.relkind = 'S' OR EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
                                          AND NOT has_column_privilege(c.oid, a.attnum, 'SELECT')))
     UNION ALL
     -- row-level security would hide rows from a user that neither owns the table nor bypasses it
     SELECT 'table ' || format('%I.%I', n.nspname, c.relname) || ' (row-level security: owner or BYPASSRLS)'
       FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
      WHERE c.oid = ANY($1::oid[]) AND c.relrowsecurity AND NOT pg_has_role(c.relowner, 'USAGE')
        AND NOT (SELECT rolsuper OR rolbypassrls FROM pg_roles WHERE rolname = current_user)
     ORDER BY 1`,
    [tables.map((t) => t.oid), schemas],
  );
  if (rows.length === 0) return { id, status: 'pass', message: `The source user may read every selected table and sequence.` };
  return {
    id,
    status: 'fail',
    message: `The source user may not read ${rows.length} object(s) the migration copies: ${listed(rows.map((r) => r.what))}.`,
    remediation:
      'GRANT USAGE ON SCHEMA … and GRANT SELECT ON ALL TABLES IN SCHEMA … / ALL SEQUENCES IN SCHEMA … to the source user; for tables with row-level security, ALTER ROLE … BYPASSRLS (or run as their owner); or leave those objects out of objects.include.',
  };
}

/** The load and the applier write as replica, so that user triggers and foreign keys do not fire twice. */
export async function checkTargetReplicationRole(target: pg.Client, user: string): Promise<CheckResult> {
  const id = 'target.session_replication_role';
  await target.query('BEGIN');
  try {
    await target.query('SET LOCAL session_replication_role = replica');
    return { id, status: 'pass', message: `${user} may set session_replication_role on the target.` };
  } catch (error) {
    return {
      id,
      status: 'fail',
      message: `User ${user} may not set session_replication_role on the target (${(error as Error).message}); the load and the CDC applier write with it set to replica, so that triggers and foreign keys do not fire for copied rows.`,
      remediation: `Make ${user} a superuser, or GRANT SET ON PARAMETER session_replication_role TO ${user} (PostgreSQL 15+), or on RDS/Aurora GRANT rds_superuser TO ${user}.`,
    };
  } finally {
    await target.query('ROLLBACK');
  }
}

/** Unlogged tables are never published: CDC would replicate nothing of them. */
export async function checkUnloggedTables(source: pg.Client, { plan }: SourceSelection): Promise<CheckResult> {
  const id = 'source.unlogged_tables';
  const tables = plan.tables;
  const { rows } = await source.query<{ name: string }>(
    `SELECT format('%I.%I', n.nspname, c.relname) AS name FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
      WHERE c.oid = ANY($1::oid[]) AND c.relpersistence = 'u' ORDER BY 1`,
    [tables.map((t) => t.oid)],
  );
  if (rows.length === 0) return { id, status: 'pass', message: 'No selected table is unlogged.' };
  return {
    id,
    status: 'fail',
    message: `${rows.length} selected table(s) are UNLOGGED: ${listed(rows.map((r) => r.name))}. Unlogged tables are never published, so their changes cannot be replicated.`,
    remediation: 'ALTER TABLE … SET LOGGED on each, leave them out (objects.exclude), or migrate them with "mode": "full".',
  };
}

/** ENABLE ALWAYS/REPLICA triggers fire in the replica-role sessions pgferry writes with. */
export async function checkReplicaTriggers(source: pg.Client, spec: MigrationSpec): Promise<CheckResult> {
  const id = 'source.replica_triggers';
  const triggers = (await replicaTriggers(source, spec.objects)).map((t) => `${t.kind} ${t.identity} (${t.enabled === 'A' ? 'always' : 'replica'})`);
  if (triggers.length === 0) return { id, status: 'pass', message: 'No selected table has a trigger or rule set to ENABLE ALWAYS or ENABLE REPLICA.' };
  const what =
    spec.schema.replicaTriggers === 'fire'
      ? 'schema.replicaTriggers is "fire": they will fire on the target for every replicated row, so their side effects add to the rows replicated from the source.'
      : 'schema.replicaTriggers is "disabled": they are created disabled and get their source state at cutover.';
  return {
    id,
    status: 'warn',
    message: `${triggers.length} trigger(s) or rule(s) are set to ENABLE ALWAYS or ENABLE REPLICA, so they fire even for replicated rows: ${listed(triggers)}. ${what}`,
    remediation: 'Choose schema.replicaTriggers: "disabled" (the default) keeps them from firing until cutover; "fire" lets them fire for replicated rows.',
  };
}

/** Every object the schema migration will leave out, and what happens to it, before anything is written. */
export function checkNotMigrated({ plan }: SourceSelection): CheckResult {
  const id = 'schema.not_migrated';
  const left = plan.omitted.filter((o) => o.status === 'not_migrated' || !['not selected by objects', 'not in a selected schema'].includes(o.detail ?? ''));
  if (left.length === 0) return { id, status: 'pass', message: 'Every object of the selected schemas will be migrated.' };
  const lines = left.map((o) => `${o.kind} ${o.identity}: ${o.status === 'skipped' ? 'skipped, ' : ''}${o.detail ?? 'not migrated'}`);
  return {
    id,
    status: 'warn',
    message: `${left.length} object(s) of the selected schemas will not be created on the target:\n    ${lines.join('\n    ')}`,
    remediation: 'Create them on the target yourself after the migration, or change the selection or schema.sync flags.',
  };
}

/** Objects of the selected schemas that the target's major version can no longer create. */
export async function checkTargetCanCreate(source: pg.Client, { schemas }: SourceSelection, targetVersionNum: number): Promise<CheckResult> {
  const id = 'schema.target_version';
  const major = Math.floor(targetVersionNum / 10000);
  // PostgreSQL 14 removed postfix (right unary) operators; a 13 source may still have them.
  const { rows } = await source.query<{ name: string }>(
    `SELECT format('operator %I.%s(%s, NONE)', n.nspname, o.oprname, format_type(o.oprleft, NULL)) AS name
       FROM pg_operator o JOIN pg_namespace n ON n.oid = o.oprnamespace
      WHERE o.oprkind = 'r' AND n.nspname = ANY($1::text[]) AND $2::int >= 14
        AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_operator'::regclass AND d.objid = o.oid AND d.deptype = 'e')
      ORDER BY 1`,
    [schemas, major],
  );
  if (rows.length === 0) return { id, status: 'pass', message: `PostgreSQL ${major} on the target can create every selected object.` };
  return {
    id,
    status: 'fail',
    message: `PostgreSQL ${major} on the target cannot create ${rows.length} object(s) of the selected schemas: ${listed(rows.map((r) => r.name))} (postfix operators were removed in PostgreSQL 14).`,
    remediation: 'Replace each postfix operator with a prefix operator or a function on the source (and what uses it), or leave its schema out of objects.include.',
  };
}

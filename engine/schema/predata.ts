/**
 * Pre-data: extensions, schemas, types, sequences, functions, aggregates, operators and their
 * classes and families, casts, conversions, text search objects, tables (their primary keys come
 * in post-data), views and materialized views (empty) — everything the full load needs — in one
 * target transaction, so a failure leaves the target as it was.
 */
import type pg from 'pg';
import type { TableInfo } from '../catalog/tables.js';
import type { MigrationSpec } from '../spec/index.js';
import { withTransaction } from '../sql.js';
import { planSchema } from './plan.js';
import { readSource, runFor, SchemaConflictError, TARGET_SETTINGS, type SchemaObjectResult } from './objects.js';
import { OPCLASS_IDENTITY, OPERATOR_IDENTITY, OPFAMILY_IDENTITY } from './operators.js';
import { CAST_IDENTITY } from './casts.js';
import { TEXT_SEARCH_EXISTING } from './text-search.js';
import { syncRoles } from './roles.js';
import { NameMap } from './mapping.js';
import { NameMappingError } from './apply-mapping.js';
import type { SchemaPlan } from './plan.js';
import { qualified } from '../sql.js';

export interface PreDataResult {
  tables: TableInfo[];
  objects: SchemaObjectResult[];
}

/** Operators, operator families and classes, casts, conversions and text search objects on a database, as `<kind> <identity>`. */
const KINDS_EXISTING = `SELECT 'operator ' || ${OPERATOR_IDENTITY} FROM pg_operator x JOIN pg_namespace n ON n.oid = x.oprnamespace
      WHERE x.oprcode::oid <> 0
     UNION ALL SELECT 'operator family ' || ${OPFAMILY_IDENTITY} FROM pg_opfamily x JOIN pg_namespace n ON n.oid = x.opfnamespace
     UNION ALL SELECT 'operator class ' || ${OPCLASS_IDENTITY} FROM pg_opclass x JOIN pg_namespace n ON n.oid = x.opcnamespace
     UNION ALL SELECT 'cast ' || ${CAST_IDENTITY} FROM pg_cast x
     UNION ALL ${TEXT_SEARCH_EXISTING}`;

/** Objects already on the target, as `<kind> <identity>` (functions with their identity arguments). */
export async function existingOnTarget(target: pg.Client): Promise<Set<string>> {
  const { rows } = await target.query<{ key: string }>(
    `SELECT 'rel ' || format('%I.%I', n.nspname, c.relname) AS key
       FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f', 'c')
     UNION ALL SELECT 'type ' || format('%I.%I', n.nspname, t.typname) FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
     UNION ALL SELECT 'proc ' || format('%I.%I(%s)', n.nspname, p.proname, oidvectortypes(p.proargtypes))
       FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname NOT IN ('pg_catalog', 'information_schema')
     UNION ALL SELECT 'coll ' || format('%I.%I', n.nspname, co.collname) FROM pg_collation co JOIN pg_namespace n ON n.oid = co.collnamespace
     UNION ALL SELECT 'schema ' || quote_ident(nspname) FROM pg_namespace
     UNION ALL SELECT 'extension ' || quote_ident(extname) FROM pg_extension
     UNION ALL ${KINDS_EXISTING}`,
  );
  return new Set(rows.map((r) => r.key));
}

/** How `existingOnTarget` names a kind; the kinds of KINDS_EXISTING by their own name. */
const EXISTS_AS: Record<string, string> = {
  collation: 'coll',
  function: 'proc',
  procedure: 'proc',
  aggregate: 'proc',
  sequence: 'rel',
  view: 'rel',
  'materialized view': 'rel',
};

/**
 * The selected tables that exist on the target, by plan key, with the identity they have there:
 * under their target names (mapping.ts). A table the mapping renames is created under its source
 * name and renamed before changes are applied (apply-mapping.ts), so that name must be free on
 * the target, and an existing table under its target name can only be dropped, or, in mode cdc
 * (nothing loaded into it), used as it is.
 */
async function tableConflicts(target: pg.Client, spec: MigrationSpec, plan: SchemaPlan): Promise<Map<string, { identity: string }>> {
  const names = NameMap.of(spec, plan.tables);
  const byKey = new Map(plan.tables.map((t) => [`rel:${t.oid}`, t]));
  const nodes = plan.nodes.filter((n) => n.kind === 'table').map((node) => {
    const source = byKey.get(node.key)!;
    return { node, source, final: names.table(source) };
  });
  const pairs = nodes.flatMap(({ source, final }) => [source, final]);
  const { rows } = await target.query<{ schema: string; name: string; identity: string }>(
    `SELECT n.nspname AS schema, c.relname AS name, format('%I.%I', n.nspname, c.relname) AS identity
       FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
       JOIN unnest($1::text[], $2::text[]) AS w(schema, name) ON w.schema = n.nspname AND w.name = c.relname
      WHERE c.relkind IN ('r', 'p')`,
    [pairs.map((p) => p.schema), pairs.map((p) => p.name)],
  );
  const found = new Map(rows.map((r) => [qualified(r), r.identity]));
  const conflicts = new Map<string, { identity: string }>();
  const problems: string[] = [];
  for (const { node, source, final } of nodes) {
    const renamed = qualified(source) !== qualified(final);
    const atFinal = found.get(qualified(final));
    if (renamed && found.has(qualified(source))) {
      problems.push(`${qualified(source)} is mapped to ${qualified(final)}, but the target already has ${qualified(source)}, the name pgferry loads it under before renaming it`);
    }
    if (atFinal === undefined) continue;
    if (renamed && spec.mode !== 'cdc' && (spec.schema.existingTables === 'ignore' || spec.schema.existingTables === 'truncate')) {
      problems.push(`${qualified(source)} is mapped to ${qualified(final)}, which already exists on the target: with a rename, pgferry loads only tables it creates (existingTables "drop" replaces it)`);
      continue;
    }
    conflicts.set(node.key, { identity: atFinal });
  }
  if (problems.length > 0) throw new NameMappingError(problems);
  return conflicts;
}

export async function migratePreData(source: pg.Client, target: pg.Client, spec: MigrationSpec): Promise<PreDataResult> {
  const plan = await readSource(source, () => planSchema(source, spec));
  const objects: SchemaObjectResult[] = [];
  const report = (kind: string, identity: string, status: SchemaObjectResult['status'], detail?: string) =>
    objects.push(detail ? { kind, identity, status, detail } : { kind, identity, status });

  await withTransaction(target, async () => {
    for (const setting of TARGET_SETTINGS) await target.query(`SET LOCAL ${setting}`);

    // Conflicts first, all of them at once, before anything changes.
    const conflicts = await tableConflicts(target, spec, plan);
    const policy = spec.schema.existingTables;
    if (conflicts.size && policy === 'error') throw new SchemaConflictError([...conflicts.values()].map((c) => c.identity));
    const list = [...conflicts.values()].map((c) => c.identity).join(', ');
    if (conflicts.size && policy === 'drop') await runFor(target, 'tables', list, [`DROP TABLE IF EXISTS ${list} CASCADE`], 'drop');
    if (conflicts.size && policy === 'truncate') await runFor(target, 'tables', list, [`TRUNCATE TABLE ${list}`], 'truncate');
    const onTarget = await existingOnTarget(target);
    const exists = (kind: string, identity: string) => onTarget.has(`${kind} ${identity}`);

    // Roles first: the objects' owners, grantees and policy roles (schema.sync.roles).
    objects.push(...(await syncRoles(source, target, spec, plan.schemas.map((s) => s.identity))));
    for (const schema of plan.schemas) {
      const existed = exists('schema', schema.identity);
      if (!existed) await runFor(target, 'schema', schema.identity, [`CREATE SCHEMA IF NOT EXISTS ${schema.identity}`]);
      report('schema', schema.identity, existed ? 'existing' : 'created', schema.detail);
    }
    for (const x of plan.extensions) {
      const existed = exists('extension', x.identity);
      if (!existed) await runFor(target, 'extension', x.identity, [`CREATE EXTENSION IF NOT EXISTS ${x.identity} WITH SCHEMA ${x.schemaIdentity} CASCADE`]);
      report('extension', x.identity, existed ? 'existing' : 'created', x.detail);
    }

    const finish: { kind: string; identity: string; sql: string[] }[] = [];
    for (const node of plan.nodes) {
      const detail = plan.details.get(node.key) ?? node.note;
      if (node.kind === 'table') {
        const conflict = conflicts.has(node.key);
        if (!conflict || policy === 'drop') await runFor(target, 'table', node.identity, node.create);
        const status = !conflict ? 'created' : policy === 'drop' ? 'replaced' : policy === 'truncate' ? 'truncated' : 'existing';
        report('table', node.identity, status, detail);
        continue;
      }
      const existed = exists(EXISTS_AS[node.kind] ?? node.kind, node.identity);
      const replaceable = node.kind === 'function' || node.kind === 'procedure' || node.kind === 'view';
      if (existed && !replaceable) {
        report(node.kind, node.identity, 'existing', detail);
        continue;
      }
      await runFor(target, node.kind, node.identity, node.create);
      if (node.finish.length) finish.push({ kind: node.kind, identity: node.identity, sql: node.finish });
      report(node.kind, node.identity, existed ? 'replaced' : 'created', detail);
    }
    for (const f of finish) await runFor(target, f.kind, f.identity, f.sql, 'set the owning column of');
  });
  return { tables: plan.tables, objects: [...objects, ...plan.omitted] };
}

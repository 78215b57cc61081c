/**
 * Precheck of name mapping (issue 15 item 1): every name the spec's mapping gives, or nameCase
 * makes, planned from the source's catalog the way apply-mapping.ts renames the target's objects,
 * and checked before anything is created: names the mapping gives to nothing selected, names
 * over 63 bytes, two objects under one name, a name the target already uses, and the source
 * names the objects are loaded under while they must be free on the target.
 */
import type pg from 'pg';
import type { MigrationSpec } from '../spec/index.js';
import { NameMap } from '../schema/mapping.js';
import { movedIdentities } from '../schema/apply-mapping.js';
import { nameKey, planMapping, readMappingCatalog, readOccupiedNames, type CatalogRelation } from '../schema/mapping-plan.js';
import { readSource } from '../schema/objects.js';
import { existingOnTarget } from '../schema/predata.js';
import type { SourceSelection } from './fidelity.js';
import type { CheckResult } from './index.js';

const RELATION_KINDS = new Set(['table', 'view', 'materialized view', 'sequence']);
/** Objects of other kinds that move with their schema, and how existingOnTarget names their kind. */
const MOVING_KINDS: Record<string, string> = { type: 'type', function: 'proc', procedure: 'proc', aggregate: 'proc', collation: 'coll' };

export async function checkMapping(source: pg.Client, target: pg.Client | undefined, spec: MigrationSpec, selection: SourceSelection): Promise<CheckResult> {
  const id = 'schema.mapping';
  const names = NameMap.of(spec, selection.plan.tables);
  const oids = selection.plan.nodes.filter((n) => RELATION_KINDS.has(n.kind)).map((n) => Number(n.key.slice('rel:'.length)));
  const catalog = await readSource(source, () => readMappingCatalog(source, oids));
  const problems = unknownNames(names, selection, catalog);
  const owned = new Set(catalog.flatMap((r) => r.sequences.map((q) => nameKey(r.schema, q.name))));
  const relations = catalog.filter((r) => !(r.kind === 'S' && owned.has(nameKey(r.schema, r.name))));

  if (target) {
    const finalSchemas = [...new Set(relations.map((r) => names.schema(r.schema)))];
    const occupied = await readOccupiedNames(target, finalSchemas);
    // existingTables "drop" replaces a table found under its target name.
    if (spec.schema.existingTables === 'drop') {
      for (const r of relations) if (r.kind === 'r' || r.kind === 'p') occupied.delete(nameKey(names.table(r).schema, names.table(r).name));
    }
    problems.push(...planMapping(relations, names, occupied).problems, ...(await stagingConflicts(target, relations, names)));
    problems.push(...(await movedObjectCollisions(target, names, selection)));
  } else {
    problems.push(...planMapping(relations, names, new Map()).problems);
  }
  if (problems.length > 0) {
    return {
      id,
      status: 'fail',
      message: `${problems.length} problem(s) with the names the mapping gives: ${problems.join('; ')}.`,
      remediation:
        'Change mapping.schemas, mapping.tables, mapping.columns or mapping.nameCase so that each target name is unique, at most 63 bytes and free on the target (or drop what holds it there), and so that each name in the mapping is a selected schema, table or column.',
    };
  }
  const renamed = relations.filter((r) => {
    const to = names.table(r);
    return to.schema !== r.schema || to.name !== r.name;
  }).length;
  return { id, status: 'pass', message: `${renamed} of ${relations.length} relation(s) get another name or schema on the target; no collision, no name over 63 bytes.` };
}

/** Names in the spec's mapping that name nothing the migration moves. */
function unknownNames(names: NameMap, { plan }: SourceSelection, relations: CatalogRelation[]): string[] {
  const explicit = names.explicit();
  const schemas = new Set(plan.nodes.map((n) => n.schema));
  const tables = new Map(plan.tables.map((t) => [nameKey(t.schema, t.name), t]));
  const problems: string[] = [];
  for (const schema of explicit.schemas) if (!schemas.has(schema)) problems.push(`mapping.schemas names ${schema}, which holds nothing the migration moves`);
  for (const table of explicit.tables) {
    const known = relations.some((r) => r.schema === table.schema && r.name === table.name);
    if (!known) problems.push(`mapping.tables names ${table.schema}.${table.name}, which the migration does not move`);
  }
  for (const { table, column } of explicit.columns) {
    const info = tables.get(nameKey(table.schema, table.name));
    if (!info) problems.push(`mapping.columns names the table ${table.schema}.${table.name}, which the migration does not move`);
    else if (info.root) problems.push(`mapping.columns names ${table.schema}.${table.name}, a partition: its columns are its partitioned table's (${info.root.schema}.${info.root.name}); map them there`);
    else if (!info.columns.some((c) => c.name === column)) problems.push(`mapping.columns names ${table.schema}.${table.name}.${column}, which is not a column of that table`);
  }
  return problems;
}

/** Relations loaded under their source names while those names hold something else on the target. */
async function stagingConflicts(target: pg.Client, relations: CatalogRelation[], names: NameMap): Promise<string[]> {
  const moving = relations.filter((r) => {
    const to = names.table(r);
    return to.schema !== r.schema || to.name !== r.name;
  });
  if (moving.length === 0) return [];
  const taken = await readOccupiedNames(target, [...new Set(moving.map((r) => r.schema))]);
  return moving
    .filter((r) => taken.has(nameKey(r.schema, r.name)))
    .map((r) => {
      const to = names.table(r);
      return `the target already has ${r.schema}.${r.name}: pgferry creates and loads the source's ${r.schema}.${r.name} under that name and renames it to ${to.schema}.${to.name} before applying changes`;
    });
}

/** Functions, types and collations moved into one schema by mapping.schemas: two of the same name and arguments, or one the target has. */
async function movedObjectCollisions(target: pg.Client, names: NameMap, { plan }: SourceSelection): Promise<string[]> {
  const moving = plan.nodes.filter((n) => MOVING_KINDS[n.kind] && names.schema(n.schema) !== n.schema);
  if (moving.length === 0) return [];
  const movedTo = await movedIdentities(target, names, moving.map((n) => n.identity));
  const onTarget = await existingOnTarget(target);
  const seen = new Map<string, string>();
  const problems: string[] = [];
  for (const node of moving) {
    const moved = movedTo.get(node.identity)!;
    const key = `${MOVING_KINDS[node.kind]} ${moved}`;
    const other = seen.get(key);
    if (other) problems.push(`${node.kind} ${node.identity} and ${other} would both be ${moved}`);
    else if (onTarget.has(key)) problems.push(`${node.kind} ${node.identity} would be ${moved}, which the target already has`);
    seen.set(key, node.identity);
  }
  return problems;
}

/**
 * The renames that put a migration's objects under their target names (mapping.ts), planned from
 * a catalog: the source's in precheck (the target's objects are created from it, under the same
 * names), the target's when apply-mapping.ts runs them. Pure once the catalog is read.
 *
 * Renames go through temporary names, so that names swapped between objects, or moved between
 * schemas that hold each other's names, never meet halfway.
 */
import { randomBytes } from 'node:crypto';
import type pg from 'pg';
import { quoteIdent, quoteTable } from '../sql.js';
import type { TableRef } from '../catalog/tables.js';
import { MAX_NAME_BYTES, nameBytes, truncateName, type NameMap } from './mapping.js';

export type RelationKind = 'r' | 'p' | 'v' | 'm' | 'S' | 'f';

export interface CatalogRelation {
  oid: number;
  schema: string;
  name: string;
  kind: RelationKind;
  /** Partitions: their partitioned table; legacy inheritance children: their first parent. Their inherited columns follow it. */
  parent: number | null;
  /** Columns in attnum order; `inherited` ones are renamed through the parent. */
  columns: { name: string; inherited: boolean }[];
  /** Its indexes (a constraint's index carries the constraint's name: renaming one renames both). */
  indexes: string[];
  /** Its constraints without an index (checks, foreign keys, not-null), not inherited. */
  constraints: string[];
  /** Sequences owned by its columns (serial, identity), with the column. */
  sequences: { name: string; column: string }[];
}

const KIND_SQL: Record<RelationKind | 'i' | 'S', string> = {
  r: 'TABLE',
  p: 'TABLE',
  v: 'VIEW',
  m: 'MATERIALIZED VIEW',
  S: 'SEQUENCE',
  f: 'FOREIGN TABLE',
  i: 'INDEX',
};
export const RELATION_KIND_NAMES: Record<RelationKind, string> = {
  r: 'table',
  p: 'table',
  v: 'view',
  m: 'materialized view',
  S: 'sequence',
  f: 'foreign table',
};

const CATALOG_SQL = `
SELECT c.oid::int AS oid, n.nspname AS schema, c.relname AS name, c.relkind::text AS kind,
       (SELECT i.inhparent::int FROM pg_inherits i WHERE i.inhrelid = c.oid ORDER BY i.inhseqno LIMIT 1) AS parent,
       coalesce((SELECT json_agg(json_build_object('name', a.attname, 'inherited', a.attinhcount > 0) ORDER BY a.attnum)
                   FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped), '[]') AS columns,
       ARRAY(SELECT ic.relname::text FROM pg_index x JOIN pg_class ic ON ic.oid = x.indexrelid WHERE x.indrelid = c.oid ORDER BY 1) AS indexes,
       ARRAY(SELECT k.conname::text FROM pg_constraint k
              WHERE k.conrelid = c.oid AND k.contype NOT IN ('p', 'u', 'x', 't') AND k.coninhcount = 0 ORDER BY 1) AS constraints,
       coalesce((SELECT json_agg(json_build_object('name', s.relname, 'column', a.attname) ORDER BY s.relname)
                   FROM pg_depend d JOIN pg_class s ON s.oid = d.objid
                   JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = d.refobjsubid
                  WHERE d.classid = 'pg_class'::regclass AND d.refclassid = 'pg_class'::regclass AND d.refobjid = c.oid
                    AND d.deptype IN ('a', 'i') AND s.relkind = 'S'), '[]') AS sequences
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE c.oid = ANY($1::oid[])
 ORDER BY n.nspname, c.relname`;

/** The relations `oids` (tables, partitions, views, materialized views, free sequences, foreign tables) as the renames need them. */
export async function readMappingCatalog(client: pg.ClientBase, oids: number[]): Promise<CatalogRelation[]> {
  const { rows } = await client.query(CATALOG_SQL, [oids]);
  return rows.map((r) => ({ ...r, kind: r.kind as RelationKind }));
}

/** Every relation and type name in `schemas` on a server, as `schema.name` keys (nameKey), with the OID of relations. */
export async function readOccupiedNames(client: pg.ClientBase, schemas: string[]): Promise<Map<string, number | null>> {
  const { rows } = await client.query<{ schema: string; name: string; oid: number | null }>(
    `SELECT n.nspname AS schema, c.relname AS name, c.oid::int AS oid FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = ANY($1::text[])
     UNION ALL
     SELECT n.nspname, t.typname, NULL FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
      WHERE n.nspname = ANY($1::text[]) AND t.typrelid = 0 AND t.typcategory <> 'A'`,
    [schemas],
  );
  return new Map(rows.map((r) => [nameKey(r.schema, r.name), r.oid]));
}

export const nameKey = (schema: string, name: string) => `${schema}\u0000${name}`;

/** One object renamed: a relation (`column` unset), or a column of one; names under the source's and the target's. */
export interface Rename {
  kind: string;
  from: TableRef;
  to: TableRef;
  /** A column or a constraint of the relation. */
  part?: { from: string; to: string };
  /** A derived name taken by another object got a number, as PostgreSQL does. */
  numbered?: boolean;
}

export interface MappingPlan {
  renames: Rename[];
  /** In order, in one transaction. */
  statements: string[];
  /** Collisions and names over 63 bytes: nothing may run while there is one. */
  problems: string[];
  /** The schemas the objects move into. */
  targetSchemas: string[];
}

interface Planned {
  relation: CatalogRelation;
  target: TableRef;
}

/**
 * Plans the renames of `relations` (under their source names) to their target names. `occupied`:
 * names already taken in the target schemas by objects that are not among `relations` (with
 * their indexes and owned sequences).
 */
export function planMapping(relations: CatalogRelation[], names: NameMap, occupied: Map<string, number | null>): MappingPlan {
  const problems: string[] = [];
  const renames: Rename[] = [];
  const byOid = new Map(relations.map((r) => [r.oid, r]));
  const root = (r: CatalogRelation): CatalogRelation => (r.parent !== null && byOid.has(r.parent) ? root(byOid.get(r.parent)!) : r);
  const planned: Planned[] = relations.map((relation) => ({ relation, target: names.table(relation) }));
  const display = (ref: TableRef) => `${ref.schema}.${ref.name}`;

  const tooLong = (what: string, name: string) => {
    if (nameBytes(name) > MAX_NAME_BYTES) problems.push(`${what} "${name}", which is ${nameBytes(name)} bytes: PostgreSQL keeps at most ${MAX_NAME_BYTES}`);
  };
  for (const schema of new Set(relations.map((r) => r.schema))) tooLong(`schema ${schema} would be named`, names.schema(schema));

  // The relation namespace of each target schema: tables, views, sequences, indexes, types.
  const taken = new Map<string, string>();
  for (const [key] of occupied) taken.set(key, 'the target');
  const claim = (schema: string, name: string, what: string): boolean => {
    const key = nameKey(schema, name);
    const holder = taken.get(key);
    if (holder !== undefined) return false;
    taken.set(key, what);
    return true;
  };
  for (const { relation, target } of planned) {
    const what = `${RELATION_KIND_NAMES[relation.kind]} ${display(relation)}`;
    tooLong(`${what} would be named`, target.name);
    if (!claim(target.schema, target.name, what)) {
      problems.push(`${what} would be named ${display(target)}, which ${taken.get(nameKey(target.schema, target.name))} already has`);
    }
  }

  const statements: { columns: string[]; toTemporary: string[]; move: string[]; toFinal: string[] } = { columns: [], toTemporary: [], move: [], toFinal: [] };
  const suffix = randomBytes(4).toString('hex');
  let temporaries = 0;
  const temporary = () => `pgferry_${suffix}_${++temporaries}`;

  for (const { relation, target } of planned) {
    const source: TableRef = { schema: relation.schema, name: relation.name };
    const alter = `ALTER ${KIND_SQL[relation.kind]}`;
    const what = display(source);

    // Columns (a partition's and a child's inherited ones are renamed with their parent's).
    const owner = root(relation);
    const ownerRef: TableRef = { schema: owner.schema, name: owner.name };
    const finalColumns = new Map<string, string>();
    const targetColumn = new Map<string, string>();
    const columnRenames: [string, string][] = [];
    for (const column of relation.columns) {
      const name = names.column(column.inherited ? ownerRef : source, column.name);
      targetColumn.set(column.name, name);
      tooLong(`column ${what}.${column.name} would be named`, name);
      const other = finalColumns.get(name);
      if (other !== undefined) problems.push(`columns ${other} and ${column.name} of ${what} would both be named ${name}`);
      finalColumns.set(name, column.name);
      if (!column.inherited && name !== column.name) {
        columnRenames.push([column.name, name]);
        renames.push({ kind: 'column', from: source, to: target, part: { from: column.name, to: name } });
      }
    }
    const temporaryColumns = columnRenames.map(([from]) => [from, temporary()] as const);
    for (const [from, tmp] of temporaryColumns) statements.columns.push(`${alter} ${quoteTable(source)} RENAME COLUMN ${quoteIdent(from)} TO ${quoteIdent(tmp)}`);
    columnRenames.forEach(([, to], i) => statements.columns.push(`${alter} ${quoteTable(source)} RENAME COLUMN ${quoteIdent(temporaryColumns[i]![1])} TO ${quoteIdent(to)}`));

    // Constraints without an index: their names are the table's own namespace.
    const constraintNames = new Set<string>();
    const constraintRenames: [string, string][] = [];
    for (const constraint of relation.constraints) {
      let name = names.derived(source, constraint);
      for (let n = 1; constraintNames.has(name); n++) name = numbered(names.derived(source, constraint), n);
      constraintNames.add(name);
      if (name !== constraint) constraintRenames.push([constraint, name]);
    }
    const temporaryConstraints = constraintRenames.map(([from]) => [from, temporary()] as const);
    for (const [from, tmp] of temporaryConstraints) statements.columns.push(`${alter} ${quoteTable(source)} RENAME CONSTRAINT ${quoteIdent(from)} TO ${quoteIdent(tmp)}`);
    constraintRenames.forEach(([from, to], i) => {
      statements.columns.push(`${alter} ${quoteTable(source)} RENAME CONSTRAINT ${quoteIdent(temporaryConstraints[i]![1])} TO ${quoteIdent(to)}`);
      renames.push({ kind: 'constraint', from: source, to: target, part: { from, to } });
    });

    // The relation, then its indexes and owned sequences, which follow it into its schema.
    const moves = relation.schema !== target.schema;
    if (moves || relation.name !== target.name) {
      const tmp = temporary();
      statements.toTemporary.push(`${alter} ${quoteTable(source)} RENAME TO ${quoteIdent(tmp)}`);
      if (moves) statements.move.push(`${alter} ${quoteTable({ schema: relation.schema, name: tmp })} SET SCHEMA ${quoteIdent(target.schema)}`);
      statements.toFinal.push(`${alter} ${quoteTable({ schema: target.schema, name: tmp })} RENAME TO ${quoteIdent(target.name)}`);
      renames.push({ kind: RELATION_KIND_NAMES[relation.kind], from: source, to: target });
    }
    // A sequence named after its column (serial: orders_customer_id_seq) follows the column's new name too.
    const sequenceName = (sequence: { name: string; column: string }) =>
      sequence.name === `${relation.name}_${sequence.column}_seq`
        ? truncateName(`${target.name}_${targetColumn.get(sequence.column) ?? sequence.column}_seq`)
        : names.derived(source, sequence.name);
    for (const [kind, dependents] of [
      ['index', relation.indexes.map((name) => ({ name, wanted: names.derived(source, name) }))],
      ['sequence', relation.sequences.map((sequence) => ({ name: sequence.name, wanted: sequenceName(sequence) }))],
    ] as const) {
      for (const { name: dependent, wanted } of dependents) {
        let name = wanted;
        for (let n = 1; !claim(target.schema, name, `${kind} of ${display(target)}`); n++) name = numbered(wanted, n);
        if (name === dependent && !moves) continue;
        const tmp = temporary();
        const sql = KIND_SQL[kind === 'index' ? 'i' : 'S'];
        statements.toTemporary.push(`ALTER ${sql} ${quoteTable({ schema: relation.schema, name: dependent })} RENAME TO ${quoteIdent(tmp)}`);
        statements.toFinal.push(`ALTER ${sql} ${quoteTable({ schema: target.schema, name: tmp })} RENAME TO ${quoteIdent(name)}`);
        if (name !== dependent || moves) {
          renames.push({ kind, from: { schema: relation.schema, name: dependent }, to: { schema: target.schema, name }, ...(name !== wanted ? { numbered: true } : {}) });
        }
      }
    }
  }
  const targetSchemas = [...new Set(planned.map((p) => p.target.schema))].sort();
  return {
    renames,
    statements: [...statements.columns, ...statements.toTemporary, ...statements.move, ...statements.toFinal],
    problems,
    targetSchemas,
  };
}

/** `name` with a number at its end, shortened to fit, as PostgreSQL names an index whose name is taken (`orders_pkey1`). */
function numbered(name: string, n: number): string {
  const digits = String(n);
  return truncateName(name, MAX_NAME_BYTES - digits.length) + digits;
}

/**
 * Name mapping on the target (issue 15): the migration's objects are created under their source
 * names (the source's deparsed DDL names them so), loaded, and given their indexes, constraints
 * and triggers there; then, once, before any change is applied or anything compared, they are
 * renamed and moved to their target names in one transaction. PostgreSQL's catalog carries the
 * new names into everything that refers to them by OID: views, defaults, constraints, indexes,
 * triggers, policies, owned sequences. Function bodies are text: they keep the names they were
 * written with.
 */
import type pg from 'pg';
import { recordEvent, recordNamesMapped, namesMapped, type RenamedObject } from '../control/index.js';
import type { MigrationSpec } from '../spec/index.js';
import { quoteIdent, withTransaction } from '../sql.js';
import { PgferryError } from '../errors.js';
import { NameMap } from './mapping.js';
import { nameKey, planMapping, readMappingCatalog, readOccupiedNames, RELATION_KIND_NAMES, type CatalogRelation } from './mapping-plan.js';

export class NameMappingError extends PgferryError {
  constructor(readonly problems: string[]) {
    super(
      'NameMappingFailed',
      `The objects cannot be given their mapped names: ${problems.join('; ')}. Nothing was renamed. Change the spec's mapping (or the target) and run pgferry resume SPEC.`,
    );
  }
}

/** Kinds of the objects pre-data records (schema_objects) that move with their schema, and how ALTER names them. */
const MOVABLE: Record<string, string> = {
  function: 'FUNCTION',
  procedure: 'PROCEDURE',
  aggregate: 'AGGREGATE',
  collation: 'COLLATION',
  conversion: 'CONVERSION',
  operator: 'OPERATOR',
  'operator class': 'OPERATOR CLASS',
  'operator family': 'OPERATOR FAMILY',
  'text search configuration': 'TEXT SEARCH CONFIGURATION',
  'text search dictionary': 'TEXT SEARCH DICTIONARY',
  'text search parser': 'TEXT SEARCH PARSER',
  'text search template': 'TEXT SEARCH TEMPLATE',
};

/** The relations pre-data put under their source names for this run (tables it found and took over included), by OID. */
async function stagedRelations(target: pg.ClientBase, migration: string): Promise<number[]> {
  const { rows } = await target.query<{ oid: number }>(
    `SELECT DISTINCT c.oid::int AS oid
       FROM pgferry.schema_objects o JOIN pg_class c ON c.oid = to_regclass(o.identity)
      WHERE o.migration = $1 AND o.phase = 'pre-data'
        AND ((o.kind = 'table' AND o.status IN ('created', 'replaced', 'truncated', 'existing'))
          OR (o.kind IN ('view', 'materialized view', 'sequence', 'foreign table') AND o.status IN ('created', 'replaced')))
        -- a sequence owned by a column moves and is renamed with its table
        AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid
                          AND d.refclassid = 'pg_class'::regclass AND d.deptype IN ('a', 'i'))`,
    [migration],
  );
  return rows.map((r) => r.oid);
}

/** The schema an identity (`format('%I.%I…')`) begins with. */
export function identitySchema(identity: string): string {
  if (!identity.startsWith('"')) return identity.slice(0, identity.indexOf('.'));
  let i = 1;
  let name = '';
  for (;;) {
    const quote = identity.indexOf('"', i);
    name += identity.slice(i, quote);
    if (identity[quote + 1] !== '"') return name;
    name += '"';
    i = quote + 2;
  }
}

/** Objects of other kinds that pre-data created in `schemas`, which move with them. */
async function stagedOthers(target: pg.ClientBase, migration: string, schemas: string[]): Promise<{ kind: string; identity: string; schema: string; domain: boolean }[]> {
  if (schemas.length === 0) return [];
  const { rows } = await target.query<{ kind: string; identity: string; domain: boolean }>(
    `SELECT o.kind, o.identity, coalesce(t.typtype = 'd', false) AS domain
       FROM pgferry.schema_objects o
       LEFT JOIN pg_type t ON o.kind = 'type' AND t.oid = to_regtype(o.identity)
      WHERE o.migration = $1 AND o.phase = 'pre-data' AND o.status IN ('created', 'replaced')
        AND (o.kind = ANY($2::text[]) OR (o.kind = 'type' AND t.typrelid = 0))
      ORDER BY o.kind, o.identity`,
    [migration, Object.keys(MOVABLE)],
  );
  return rows.map((r) => ({ ...r, schema: identitySchema(r.identity) })).filter((r) => schemas.includes(r.schema));
}

/**
 * Renames the run's objects to their target names, once (a run that resumes after it finds them
 * renamed). Throws NameMappingError, renaming nothing, when names collide or are too long.
 */
export async function applyNameMapping(target: pg.Client, spec: MigrationSpec): Promise<RenamedObject[]> {
  const names = NameMap.of(spec);
  if (names.identity || (await namesMapped(target, spec.name))) return [];
  return withTransaction(target, async () => {
    await target.query('LOCK TABLE pgferry.migrations IN SHARE ROW EXCLUSIVE MODE');
    if (await namesMapped(target, spec.name)) return [];
    const relations = await readMappingCatalog(target, await stagedRelations(target, spec.name));
    const mine = new Set(relations.flatMap((r) => [r.name, ...r.indexes, ...r.sequences].map((name) => nameKey(r.schema, name))));
    const finalSchemas = [...new Set(relations.map((r) => names.schema(r.schema)))];
    const occupied = await readOccupiedNames(target, finalSchemas);
    for (const key of mine) occupied.delete(key);
    const plan = planMapping(relations, names, occupied);
    if (plan.problems.length > 0) throw new NameMappingError(plan.problems);

    const identities = await identitiesOf(target, relations);
    const movedFrom = [...new Set(relations.filter((r) => names.schema(r.schema) !== r.schema).map((r) => r.schema))];
    const others = await stagedOthers(target, spec.name, movedFrom);
    for (const schema of plan.targetSchemas) {
      const staging = relations.find((r) => names.schema(r.schema) === schema)!.schema;
      await target.query(
        `DO $$ BEGIN
           IF to_regnamespace(${literal(schema)}) IS NULL THEN
             EXECUTE format('CREATE SCHEMA %I AUTHORIZATION %I', ${literal(schema)}, (SELECT nspowner::regrole::text FROM pg_namespace WHERE nspname = ${literal(staging)}));
           END IF;
         END $$`,
      );
    }
    for (const statement of plan.statements) await target.query(statement);
    for (const other of others) {
      const alter = other.kind === 'type' ? (other.domain ? 'DOMAIN' : 'TYPE') : MOVABLE[other.kind]!;
      await target.query(`ALTER ${alter} ${other.identity} SET SCHEMA ${quoteIdent(names.schema(other.schema))}`);
    }
    const after = await identitiesOf(target, relations);
    const renamed: RenamedObject[] = relations.flatMap((r) => {
      const from = identities.get(r.oid)!;
      const to = after.get(r.oid)!;
      return from === to ? [] : [{ kind: RELATION_KIND_NAMES[r.kind], sourceIdentity: from, targetIdentity: to, numbered: false }];
    });
    for (const rename of plan.renames.filter((r) => r.kind === 'column' || r.kind === 'constraint' || r.kind === 'index' || r.kind === 'sequence')) {
      renamed.push({ kind: rename.kind, sourceIdentity: rename.from, targetIdentity: rename.to, numbered: rename.numbered === true });
    }
    await dropEmptiedSchemas(target, spec.name, movedFrom);
    await recordNamesMapped(target, spec.name, renamed);
    const numbered = plan.renames.filter((r) => r.numbered);
    await recordEvent(
      target,
      spec.name,
      'info',
      `name mapping: ${renamed.filter((r) => r.kind !== 'column').length} object(s) and ${renamed.filter((r) => r.kind === 'column').length} column(s) renamed` +
        (others.length ? `, ${others.length} other object(s) moved with their schema` : '') +
        (numbered.length ? `; ${numbered.length} derived name(s) taken by another object got a number: ${numbered.map((r) => `${r.from} → ${r.to}`).join(', ')}` : ''),
    );
    return renamed;
  });
}

const literal = (text: string) => `'${text.replace(/'/g, "''")}'`;

async function identitiesOf(target: pg.ClientBase, relations: CatalogRelation[]): Promise<Map<number, string>> {
  const { rows } = await target.query<{ oid: number; identity: string }>(
    `SELECT c.oid::int AS oid, format('%I.%I', n.nspname, c.relname) AS identity FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = ANY($1::oid[])`,
    [relations.map((r) => r.oid)],
  );
  return new Map(rows.map((r) => [r.oid, r.identity]));
}

/** The schemas this run created under source names that are now empty: dropped (RESTRICT: one still holding anything stays). */
async function dropEmptiedSchemas(target: pg.ClientBase, migration: string, schemas: string[]): Promise<void> {
  const { rows } = await target.query<{ schema: string }>(
    `SELECT n.nspname AS schema FROM pgferry.schema_objects o JOIN pg_namespace n ON quote_ident(n.nspname) = o.identity
      WHERE o.migration = $1 AND o.kind = 'schema' AND o.status = 'created' AND n.nspname = ANY($2::text[])
        AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.refclassid = 'pg_namespace'::regclass AND d.refobjid = n.oid)`,
    [migration, schemas],
  );
  for (const { schema } of rows) await target.query(`DROP SCHEMA ${quoteIdent(schema)} RESTRICT`);
}

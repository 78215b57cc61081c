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
import { messageOf, quoteIdent, withTransaction } from '../sql.js';
import { isTransient } from '../connect/index.js';
import { PgferryError } from '../errors.js';
import { NameMap } from './mapping.js';
import { nameKey, planMapping, readMappingCatalog, readOccupiedNames, type Rename } from './mapping-plan.js';

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

/**
 * Each identity (`format('%I.%I…')`) as it reads once its object is in the schema `names` maps its
 * schema to; one round trip for PostgreSQL's own quoting of the schema names.
 */
export async function movedIdentities(client: pg.ClientBase, names: NameMap, identities: string[]): Promise<Map<string, string>> {
  const schemas = [...new Set(identities.map(identitySchema))];
  const { rows } = await client.query<{ schema: string; from: string; to: string }>(
    'SELECT s.schema, quote_ident(s.schema) AS from, quote_ident(s.target) AS to FROM unnest($1::text[], $2::text[]) AS s(schema, target)',
    [schemas, schemas.map((schema) => names.schema(schema))],
  );
  const quoted = new Map(rows.map((r) => [r.schema, r]));
  return new Map(
    identities.map((identity) => {
      const { from, to } = quoted.get(identitySchema(identity))!;
      return [identity, to + identity.slice(from.length)];
    }),
  );
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
    if (relations.length === 0) {
      await recordNamesMapped(target, spec.name, []);
      return [];
    }
    const mine = new Set(relations.flatMap((r) => [r.name, ...r.indexes, ...r.sequences.map((q) => q.name)].map((name) => nameKey(r.schema, name))));
    const finalSchemas = [...new Set(relations.map((r) => names.schema(r.schema)))];
    const occupied = await readOccupiedNames(target, finalSchemas);
    for (const key of mine) occupied.delete(key);
    const plan = planMapping(relations, names, occupied);
    if (plan.problems.length > 0) throw new NameMappingError(plan.problems);

    const movedFrom = [...new Set(relations.filter((r) => names.schema(r.schema) !== r.schema).map((r) => r.schema))];
    const others = await stagedOthers(target, spec.name, movedFrom);
    for (const schema of plan.targetSchemas) {
      const staging = relations.find((r) => names.schema(r.schema) === schema)!.schema;
      await createTargetSchema(target, schema, staging);
    }
    const run = async (statement: string) => {
      try {
        await target.query(statement);
      } catch (error) {
        if (isTransient(error)) throw error;
        throw new NameMappingError([`${statement}: ${messageOf(error)}`]);
      }
    };
    for (const statement of plan.statements) await run(statement);
    const movedTo = await movedIdentities(target, names, others.map((o) => o.identity));
    const moved: RenamedObject[] = [];
    for (const other of others) {
      const alter = other.kind === 'type' ? (other.domain ? 'DOMAIN' : 'TYPE') : MOVABLE[other.kind]!;
      await run(`ALTER ${alter} ${other.identity} SET SCHEMA ${quoteIdent(names.schema(other.schema))}`);
      moved.push({ kind: other.kind, sourceIdentity: other.identity, targetIdentity: movedTo.get(other.identity)!, numbered: false });
    }
    const renamed = [...(await identitiesOfRenames(target, plan.renames)), ...moved];
    // The load's plan names each table's (and unit's) target: from now on, its target name.
    const tables = relations.filter((r) => r.kind === 'r' || r.kind === 'p');
    for (const planned of ['tables', 'units']) {
      await target.query(
        `UPDATE pgferry.${planned} t SET target_schema = m.to_schema, target_table = m.to_name
           FROM unnest($2::text[], $3::text[], $4::text[], $5::text[]) AS m(from_schema, from_name, to_schema, to_name)
          WHERE t.migration = $1 AND t.source_schema = m.from_schema AND t.source_table = m.from_name`,
        [spec.name, tables.map((r) => r.schema), tables.map((r) => r.name), tables.map((r) => names.table(r).schema), tables.map((r) => names.table(r).name)],
      );
    }
    await dropEmptiedSchemas(target, spec.name, movedFrom);
    await recordNamesMapped(target, spec.name, renamed);
    const numbered = renamed.filter((r) => r.numbered);
    await recordEvent(
      target,
      spec.name,
      'info',
      `name mapping: ${renamed.length - moved.length - renamed.filter((r) => r.kind === 'column').length} object(s) and ${renamed.filter((r) => r.kind === 'column').length} column(s) renamed` +
        (moved.length ? `, ${moved.length} other object(s) moved with their schema` : '') +
        (numbered.length ? `; ${numbered.length} derived name(s) taken by another object got a number: ${numbered.map((r) => `${r.sourceIdentity} → ${r.targetIdentity}`).join(', ')}` : ''),
    );
    return renamed;
  });
}

/** A target schema that does not exist yet, with the owner, privileges and comment of the schema its objects come from. */
async function createTargetSchema(target: pg.ClientBase, schema: string, staging: string): Promise<void> {
  const { rows: exists } = await target.query('SELECT 1 FROM pg_namespace WHERE nspname = $1', [schema]);
  if (exists.length > 0) return;
  const { rows } = await target.query<{ owner: string; comment: string | null }>(
    "SELECT nspowner::regrole::text AS owner, obj_description(oid, 'pg_namespace') AS comment FROM pg_namespace WHERE nspname = $1",
    [staging],
  );
  // regrole's text form is the role's name quoted as an identifier.
  await target.query(`CREATE SCHEMA ${quoteIdent(schema)} AUTHORIZATION ${rows[0]!.owner}`);
  const { rows: grants } = await target.query<{ privilege: string; grantee: string; grantable: boolean }>(
    `SELECT a.privilege_type AS privilege, CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE quote_ident(pg_get_userbyid(a.grantee)) END AS grantee, a.is_grantable AS grantable
       FROM pg_namespace n, aclexplode(n.nspacl) a WHERE n.nspname = $1 AND a.grantee <> n.nspowner`,
    [staging],
  );
  for (const g of grants) await target.query(`GRANT ${g.privilege} ON SCHEMA ${quoteIdent(schema)} TO ${g.grantee}${g.grantable ? ' WITH GRANT OPTION' : ''}`);
  if (rows[0]!.comment !== null) {
    const { rows: comment } = await target.query<{ sql: string }>("SELECT format('COMMENT ON SCHEMA %I IS %L', $1::text, $2::text) AS sql", [schema, rows[0]!.comment]);
    await target.query(comment[0]!.sql);
  }
}

/**
 * The renames as recorded: relations as `format('%I.%I')`, columns as `schema.table.column`,
 * constraints as `constraint on schema.table`, each part quoted as PostgreSQL quotes it.
 */
async function identitiesOfRenames(target: pg.ClientBase, renames: Rename[]): Promise<RenamedObject[]> {
  const { rows } = await target.query<{ source: string; target: string }>(
    `SELECT CASE WHEN r.kind = 'constraint' THEN format('%I on %I.%I', r.from_part, r.from_schema, r.from_name)
                 WHEN r.from_part IS NOT NULL THEN format('%I.%I.%I', r.from_schema, r.from_name, r.from_part)
                 ELSE format('%I.%I', r.from_schema, r.from_name) END AS source,
            CASE WHEN r.kind = 'constraint' THEN format('%I on %I.%I', r.to_part, r.to_schema, r.to_name)
                 WHEN r.to_part IS NOT NULL THEN format('%I.%I.%I', r.to_schema, r.to_name, r.to_part)
                 ELSE format('%I.%I', r.to_schema, r.to_name) END AS target
       FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[]) WITH ORDINALITY
              AS r(kind, from_schema, from_name, from_part, to_schema, to_name, to_part, ord)
      ORDER BY r.ord`,
    [
      renames.map((r) => r.kind),
      renames.map((r) => r.from.schema),
      renames.map((r) => r.from.name),
      renames.map((r) => r.part?.from ?? null),
      renames.map((r) => r.to.schema),
      renames.map((r) => r.to.name),
      renames.map((r) => r.part?.to ?? null),
    ],
  );
  return renames.map((r, i) => ({ kind: r.kind, sourceIdentity: rows[i]!.source, targetIdentity: rows[i]!.target, numbered: r.numbered === true }));
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

/** `pgferry.renamed_objects` and `migrations.names_mapped_at`: the renames of name mapping (engine/schema/apply-mapping.ts). */
import type pg from 'pg';

export interface RenamedObject {
  kind: string;
  sourceIdentity: string;
  targetIdentity: string;
  numbered: boolean;
}

/** Whether the run's objects carry their target names yet (they are created under the source's, and renamed before changes are applied). */
export async function namesMapped(client: pg.ClientBase, migration: string): Promise<boolean> {
  if (!(await mappingRecorded(client))) return false;
  const { rows } = await client.query('SELECT names_mapped_at IS NOT NULL AS mapped FROM pgferry.migrations WHERE name = $1', [migration]);
  return rows[0]?.mapped === true;
}

/** Whether the control schema records renames (one created by an older pgferry, not yet brought up to date, does not). */
async function mappingRecorded(client: pg.ClientBase): Promise<boolean> {
  const { rows } = await client.query("SELECT to_regclass('pgferry.renamed_objects') IS NOT NULL AS recorded");
  return rows[0]?.recorded === true;
}

/** Records the renames and that they are done (in the renames' transaction). */
export async function recordNamesMapped(client: pg.ClientBase, migration: string, renamed: RenamedObject[]): Promise<void> {
  await client.query(
    `INSERT INTO pgferry.renamed_objects (migration, kind, source_identity, target_identity, numbered)
     SELECT $1, u.kind, u.source_identity, u.target_identity, u.numbered
       FROM unnest($2::text[], $3::text[], $4::text[], $5::boolean[]) AS u(kind, source_identity, target_identity, numbered)
     ON CONFLICT (migration, kind, source_identity) DO UPDATE SET target_identity = EXCLUDED.target_identity, numbered = EXCLUDED.numbered`,
    [migration, renamed.map((r) => r.kind), renamed.map((r) => r.sourceIdentity), renamed.map((r) => r.targetIdentity), renamed.map((r) => r.numbered)],
  );
  await client.query('UPDATE pgferry.migrations SET names_mapped_at = clock_timestamp() WHERE name = $1', [migration]);
}

export async function renamedObjects(client: pg.ClientBase, migration: string): Promise<RenamedObject[]> {
  if (!(await mappingRecorded(client))) return [];
  const { rows } = await client.query(
    `SELECT kind, source_identity AS "sourceIdentity", target_identity AS "targetIdentity", numbered
       FROM pgferry.renamed_objects WHERE migration = $1 ORDER BY kind, source_identity`,
    [migration],
  );
  return rows;
}

/** Source identity → target identity of the relations (tables, views, sequences, indexes) name mapping renamed; empty before it ran. */
export async function renamedRelations(client: pg.ClientBase, migration: string): Promise<Map<string, string>> {
  const renamed = await renamedObjects(client, migration);
  return new Map(renamed.filter((r) => r.kind !== 'column' && r.kind !== 'constraint').map((r) => [r.sourceIdentity, r.targetIdentity]));
}

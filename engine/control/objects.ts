/** `pgferry.schema_objects`: what schema migration did with each object, by phase. */
import type pg from 'pg';

export type SchemaObjectStatus = 'created' | 'existing' | 'truncated' | 'replaced' | 'not_migrated' | 'skipped';

export interface SchemaObjectResult {
  kind: string;
  identity: string;
  status: SchemaObjectStatus;
  detail?: string;
}

/** Upserts results into `pgferry.schema_objects` (the control schema and the migration's row must exist). */
export async function recordSchemaObjects(
  target: pg.Client,
  migration: string,
  phase: 'pre-data' | 'post-data' | 'sequences' | 'cutover',
  objects: SchemaObjectResult[],
): Promise<void> {
  // One row per (kind, identity): a batch naming an object twice would make ON CONFLICT fail.
  const unique = [...new Map(objects.map((o) => [`${o.kind}\u0000${o.identity}`, o])).values()];
  if (unique.length === 0) return;
  await target.query(
    `INSERT INTO pgferry.schema_objects (migration, phase, kind, identity, status, detail)
     SELECT $1, $2, u.kind, u.identity, u.status, u.detail
       FROM unnest($3::text[], $4::text[], $5::text[], $6::text[]) AS u(kind, identity, status, detail)
     ON CONFLICT (migration, kind, identity)
     DO UPDATE SET phase = EXCLUDED.phase, status = EXCLUDED.status, detail = EXCLUDED.detail`,
    [
      migration,
      phase,
      unique.map((o) => o.kind),
      unique.map((o) => o.identity),
      unique.map((o) => o.status),
      unique.map((o) => o.detail ?? null),
    ],
  );
}

/** How many objects of each kind ended in each status. */
export async function schemaObjectCounts(target: pg.Client, migration: string): Promise<{ kind: string; counts: Record<string, number> }[]> {
  const { rows } = await target.query<{ kind: string; status: string; n: number }>(
    `SELECT kind, status, count(*)::int AS n FROM pgferry.schema_objects WHERE migration = $1 GROUP BY 1, 2 ORDER BY 1, 2`,
    [migration],
  );
  const kinds = new Map<string, Record<string, number>>();
  for (const row of rows) {
    if (!kinds.has(row.kind)) kinds.set(row.kind, {});
    kinds.get(row.kind)![row.status] = row.n;
  }
  return [...kinds].map(([kind, counts]) => ({ kind, counts }));
}

/** An object the migration left out: not migrated (a kind pgferry does not create) or skipped (the selection, a flag, a dependency). */
export interface LeftOutObject {
  kind: string;
  identity: string;
  status: 'not_migrated' | 'skipped';
  detail: string | null;
}

/** The objects left behind on purpose, with the reason. */
export async function leftOutObjects(target: pg.Client, migration: string): Promise<LeftOutObject[]> {
  const { rows } = await target.query<LeftOutObject>(
    `SELECT kind, identity, status, detail FROM pgferry.schema_objects
      WHERE migration = $1 AND status IN ('not_migrated', 'skipped') ORDER BY kind, identity`,
    [migration],
  );
  return rows;
}

/** An object schema migration created or found: its identity on the source, and on the target (where name mapping renamed it). */
export interface MigratedObject {
  source: string;
  target: string;
}

/** A kind's objects that schema migration created or found on the target (e.g. the materialized views), with their target identities. */
export async function migratedObjects(target: pg.Client, migration: string, kind: string): Promise<MigratedObject[]> {
  const { rows } = await target.query<MigratedObject>(
    `SELECT o.identity AS source, coalesce(r.target_identity, o.identity) AS target
       FROM pgferry.schema_objects o
       LEFT JOIN pgferry.renamed_objects r ON r.migration = o.migration AND r.kind = o.kind AND r.source_identity = o.identity
      WHERE o.migration = $1 AND o.kind = $2 AND o.status IN ('created', 'existing', 'replaced') ORDER BY o.identity`,
    [migration, kind],
  );
  return rows;
}

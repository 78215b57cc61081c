/**
 * Materialized views compared like tables without a key (count and checksum of all rows). The
 * target's were refreshed from the migrated data (post-data, and again at cutover with CDC):
 * PostgreSQL cannot write the source's rows into a materialized view without writing system
 * catalogs, so where the source's contents are stale, or its query volatile, they differ. Such
 * a view is named in the report; it does not fail the migration (the target holds what a
 * REFRESH gives).
 */
import type pg from 'pg';
import type { MigratedObject, SchemaObjectResult } from '../control/index.js';
import { compareTable, withComparedSides, type CompareOptions } from './index.js';

interface ViewFacts {
  schema: string;
  name: string;
  populated: boolean;
  columns: string[];
}

async function viewFacts(client: pg.Client, identity: string): Promise<ViewFacts | undefined> {
  const { rows } = await client.query<ViewFacts>(
    `SELECT n.nspname AS schema, c.relname AS name, c.relispopulated AS populated,
            ARRAY(SELECT attname::text FROM pg_attribute WHERE attrelid = c.oid AND attnum > 0 AND NOT attisdropped ORDER BY attnum) AS columns
       FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
      WHERE c.oid = to_regclass($1) AND c.relkind = 'm'`,
    [identity],
  );
  return rows[0];
}

const KIND = 'materialized view data';

/** Compares one view whose two sides are known; the outcome as the report's object line. */
async function compareView(source: pg.Client, target: pg.Client, view: MigratedObject, options: CompareOptions): Promise<SchemaObjectResult> {
  const identity = view.target;
  const [onSource, onTarget] = await Promise.all([viewFacts(source, view.source), viewFacts(target, view.target)]);
  const differs = (detail: string): SchemaObjectResult => ({ kind: KIND, identity, status: 'not_migrated', detail });
  if (!onSource || !onTarget) return differs(`the materialized view is missing on the ${onSource ? 'target' : 'source'}; its contents were not compared`);
  if (!onSource.populated && !onTarget.populated) return { kind: KIND, identity, status: 'skipped', detail: 'not populated on the source' };
  if (onSource.populated !== onTarget.populated) {
    return differs(`populated on the ${onSource.populated ? 'source' : 'target'} only; REFRESH MATERIALIZED VIEW ${identity} on the target`);
  }
  const table = { source: { schema: onSource.schema, name: onSource.name }, target: { schema: onTarget.schema, name: onTarget.name }, columns: onSource.columns, targetColumns: onTarget.columns, primaryKey: null };
  const result = await compareTable(source, target, table, { ...options, method: 'checksum' });
  if (result.status === 'match') return { kind: KIND, identity, status: 'created', detail: `refreshed; equal to the source's contents (${result.sourceRows} rows)` };
  return differs(
    `refreshed on the target from the migrated data, its contents differ from the source's (${result.sourceRows} rows on the source, ${result.targetRows} on the target): ` +
      `the source's are stale or its query is volatile; a REFRESH on the source gives the target's contents unless the query is volatile`,
  );
}

/** Compares the named materialized views (the source at `snapshot` when given), one report line each. */
export async function compareMaterializedViews(
  connectSource: () => Promise<pg.Client>,
  connectTarget: () => Promise<pg.Client>,
  views: MigratedObject[],
  options: CompareOptions & { snapshot?: string },
): Promise<SchemaObjectResult[]> {
  if (views.length === 0) return [];
  return withComparedSides(connectSource, connectTarget, options.snapshot, async (source, target) => {
    const results: SchemaObjectResult[] = [];
    for (const view of views) results.push(await compareView(source, target, view, options));
    return results;
  });
}

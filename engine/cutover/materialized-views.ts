/**
 * Materialized views at cutover. A REFRESH on the source is not replicated (it writes no rows
 * into the stream), so once the stream has drained, every migrated materialized view is
 * refreshed on the target, views before the views that read them: the target then holds what a
 * REFRESH on the source gives. A view the source holds unpopulated is emptied the same way.
 */
import type pg from 'pg';
import { withTransaction } from '../sql.js';
import type { MigratedObject } from '../control/index.js';

interface ViewRow {
  identity: string;
  reads: string[];
}

/** The target's materialized views among `identities`, each after the materialized views it reads. */
async function inDependencyOrder(target: pg.Client, identities: string[]): Promise<string[]> {
  const { rows } = await target.query<ViewRow>(
    `SELECT format('%I.%I', n.nspname, c.relname) AS identity,
            ARRAY(SELECT DISTINCT format('%I.%I', xn.nspname, x.relname)
                    FROM pg_rewrite r
                    JOIN pg_depend d ON d.classid = 'pg_rewrite'::regclass AND d.objid = r.oid AND d.refclassid = 'pg_class'::regclass
                    JOIN pg_class x ON x.oid = d.refobjid AND x.relkind = 'm' AND x.oid <> c.oid
                    JOIN pg_namespace xn ON xn.oid = x.relnamespace
                   WHERE r.ev_class = c.oid) AS reads
       FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
      WHERE c.relkind = 'm' AND format('%I.%I', n.nspname, c.relname) = ANY($1::text[])`,
    [identities],
  );
  const reads = new Map(rows.map((r) => [r.identity, r.reads]));
  const ordered: string[] = [];
  const visit = (identity: string, path: Set<string>) => {
    if (ordered.includes(identity) || path.has(identity) || !reads.has(identity)) return;
    path.add(identity);
    for (const dependency of reads.get(identity)!) visit(dependency, path);
    ordered.push(identity);
  };
  for (const identity of [...reads.keys()].sort()) visit(identity, new Set());
  return ordered;
}

/** Refreshes the migrated materialized views on the target as the source holds them (populated or not); returns those refreshed, by target identity. */
export async function refreshMaterializedViews(source: pg.Client, target: pg.Client, views: MigratedObject[]): Promise<string[]> {
  if (views.length === 0) return [];
  const { rows } = await source.query<{ identity: string; populated: boolean }>(
    `SELECT format('%I.%I', n.nspname, c.relname) AS identity, c.relispopulated AS populated
       FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relkind = 'm'`,
  );
  const onSource = new Map(rows.map((r) => [r.identity, r.populated]));
  const populated = new Map(views.filter((v) => onSource.has(v.source)).map((v) => [v.target, onSource.get(v.source)!]));
  const ordered = (await inDependencyOrder(target, [...populated.keys()])).filter((identity) => populated.has(identity));
  await withTransaction(target, async () => {
    // The identities are format('%I.%I') of the catalog, already quoted.
    for (const identity of ordered) await target.query(`REFRESH MATERIALIZED VIEW ${identity}${populated.get(identity) ? '' : ' WITH NO DATA'}`);
  });
  return ordered;
}

/**
 * User-defined casts. They belong to no schema: one is carried when its source type, target
 * type or function is migrated (the plan follows `wantedWithRefs`), and named as skipped
 * otherwise. Same rules as definitions.ts.
 */
import type pg from 'pg';
import { NOT_MEMBER, type Node } from './definitions.js';

export const CAST_IDENTITY = `format('(%s AS %s)', format_type(x.castsource, NULL), format_type(x.casttarget, NULL))`;

/** Casts created by users (not built in, not an extension's, not a range type's). */
export async function castNodes(source: pg.Client): Promise<Node[]> {
  const { rows } = await source.query<{ key: string; identity: string; sql: string }>(
    `SELECT 'cast:' || x.oid AS key, ${CAST_IDENTITY} AS identity,
            format('CREATE CAST %s %s%s', ${CAST_IDENTITY},
                   CASE x.castmethod WHEN 'f' THEN 'WITH FUNCTION ' || x.castfunc::regprocedure::text
                                     WHEN 'i' THEN 'WITH INOUT' ELSE 'WITHOUT FUNCTION' END,
                   CASE x.castcontext WHEN 'a' THEN ' AS ASSIGNMENT' WHEN 'i' THEN ' AS IMPLICIT' ELSE '' END) AS sql
       FROM pg_cast x
      WHERE x.oid >= 16384 AND ${NOT_MEMBER('pg_cast', 'x.oid')}
        -- a range type's cast to its multirange comes with the type (an internal dependency)
        AND NOT EXISTS (SELECT 1 FROM pg_depend i WHERE i.classid = 'pg_cast'::regclass AND i.objid = x.oid AND i.deptype = 'i')`,
  );
  return rows.map(
    (r): Node => ({
      key: r.key,
      kind: 'cast',
      identity: r.identity,
      schema: '',
      create: [r.sql],
      finish: [],
      exclusion: 'neither its source type, its target type nor its function is migrated',
      wantedWithRefs: true,
    }),
  );
}

/**
 * Precheck of what logical replication does not carry: large objects (copied by the full load,
 * resynced at cutover in CDC modes) and materialized views (refreshed on the target, so a
 * volatile query gives other contents than the source's).
 */
import type pg from 'pg';
import { schemaSelected } from '../cdc/ddl/statement.js';
import type { MigrationSpec } from '../spec/index.js';
import type { CheckResult } from './index.js';

const MB = 1024 * 1024;

export async function checkLargeObjects(source: pg.Client, mode: MigrationSpec['mode']): Promise<CheckResult> {
  const id = 'source.large_objects';
  const { rows } = await source.query<{ count: number; bytes: number }>(
    `SELECT count(*)::int AS count, pg_total_relation_size('pg_catalog.pg_largeobject')::float8 AS bytes FROM pg_largeobject_metadata`,
  );
  const { count, bytes } = rows[0]!;
  if (count === 0) return { id, status: 'pass', message: 'The source has no large objects.' };
  const what = `The source has ${count} large object(s), ${(bytes / MB).toFixed(1)} MB on disk (pg_largeobject)`;
  if (mode === 'full') return { id, status: 'pass', message: `${what}: the full load copies them with their owners, grants and comments.` };
  return {
    id,
    status: 'warn',
    message:
      `${what}. Logical replication does not carry large-object changes: ${mode === 'full+cdc' ? 'the full load copies them, and ' : ''}` +
      'at cutover, after the drain, every large object is compared with the target and those created, changed or unlinked since are copied or unlinked, which adds to the cutover time.',
    remediation: 'Nothing to do; to shorten the cutover, avoid writing large objects while replicating.',
  };
}

export async function checkMaterializedViews(source: pg.Client, selection: MigrationSpec['objects']): Promise<CheckResult> {
  const id = 'source.materialized_views';
  const { rows } = await source.query<{ schema: string; identity: string; functions: string }>(
    `WITH calls AS (
       SELECT r.ev_class, m[1]::oid AS fn FROM pg_rewrite r, regexp_matches(r.ev_action::text, ':(?:funcid|aggfnoid|winfnoid) (\\d+)', 'g') m
       UNION SELECT r.ev_class, o.oprcode::oid FROM pg_rewrite r, regexp_matches(r.ev_action::text, ':opno (\\d+)', 'g') m
         JOIN pg_operator o ON o.oid = m[1]::oid)
     SELECT n.nspname AS schema, format('%I.%I', n.nspname, c.relname) AS identity, string_agg(DISTINCT p.oid::regprocedure::text, ', ') AS functions
       FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace JOIN calls k ON k.ev_class = c.oid JOIN pg_proc p ON p.oid = k.fn
      WHERE c.relkind = 'm' AND p.provolatile = 'v'
      GROUP BY 1, 2 ORDER BY 2`,
  );
  const volatile = rows.filter((r) => schemaSelected(selection, r.schema));
  if (volatile.length === 0) {
    return { id, status: 'pass', message: 'Materialized views are refreshed on the target from the migrated data; none uses a volatile function.' };
  }
  return {
    id,
    status: 'warn',
    message:
      `${volatile.length} materialized view(s) use volatile functions: ${volatile.map((v) => `${v.identity} (${v.functions})`).join('; ')}. ` +
      'Materialized views are refreshed on the target (PostgreSQL cannot copy their rows into them), so the contents of these will differ from the source\'s; the report names every materialized view whose contents differ.',
    remediation: 'Nothing to do if refreshed contents are what the target should hold; otherwise refresh them after the migration as the applications expect.',
  };
}

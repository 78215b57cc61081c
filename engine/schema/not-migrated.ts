/**
 * What the source has in (or around) the selected schemas that pgferry does not create, listed
 * so the report shows it rather than dropping it silently.
 */
import type pg from 'pg';
import type { MigrationSpec } from '../spec/index.js';
import type { SchemaObjectResult } from './objects.js';
import { builtInFamilyMembers } from './operators.js';

const IN_SELECTION = (column: string) => `${column} IN (SELECT oid FROM sel)`;

/** Schema-scoped catalogs whose objects are not migrated: [kind, catalog, namespace column, extra condition]. */
const SCOPED: [string, string, string, string][] = [
  ['type', 'pg_type', 'typnamespace', `typtype IN ('b', 'p') AND NOT EXISTS (SELECT 1 FROM pg_type e WHERE e.typarray = x.oid)`],
  ['foreign table', 'pg_class', 'relnamespace', `relkind = 'f'`],
  ['statistics', 'pg_statistic_ext', 'stxnamespace', 'true'],
];

const DETAIL: Record<string, string> = {
  rule: 'rules are not migrated',
  policy: 'row-level security policies are not migrated',
  'row level security': 'ENABLE/FORCE ROW LEVEL SECURITY is not migrated',
  type: 'base and shell types are not migrated',
  'foreign table': 'foreign tables, their servers and user mappings are not migrated',
  statistics: 'extended statistics objects are not migrated',
  'event trigger': 'event triggers are not migrated',
  publication: 'publications are not migrated',
  subscription: 'subscriptions are not migrated',
  'default privileges': 'default privileges are not migrated',
  'operator family member': 'members added to an operator family pgferry does not create (a built-in one) are not migrated',
};

export async function notMigrated(source: pg.Client, schemas: string[], spec: MigrationSpec): Promise<SchemaObjectResult[]> {
  const scoped = SCOPED.map(
    ([kind, catalog, namespace, condition]) =>
      `SELECT '${kind}', '${catalog}'::regclass, x.oid, 0 FROM ${catalog} x WHERE ${IN_SELECTION(`x.${namespace}`)} AND ${condition}`,
  );
  // Before PostgreSQL 15 only superusers may read pg_subscription.
  const { rows: access } = await source.query<{ subscriptions: boolean }>(
    `SELECT has_column_privilege('pg_catalog.pg_subscription', 'subdbid', 'SELECT') AND has_column_privilege('pg_catalog.pg_subscription', 'oid', 'SELECT') AS subscriptions`,
  );
  const subscriptions = access[0]!.subscriptions
    ? `UNION ALL SELECT 'subscription', 'pg_subscription'::regclass, oid, 0 FROM pg_subscription
        WHERE subdbid = (SELECT oid FROM pg_database WHERE datname = current_database())`
    : '';
  const { rows } = await source.query<SchemaObjectResult>(
    `WITH sel AS (SELECT oid FROM pg_namespace WHERE nspname = ANY($1::text[])),
     found(kind, classid, objid, sub) AS (
       SELECT 'rule', 'pg_rewrite'::regclass, r.oid, 0 FROM pg_rewrite r JOIN pg_class c ON c.oid = r.ev_class
        WHERE r.rulename <> '_RETURN' AND ${IN_SELECTION('c.relnamespace')}
       UNION ALL SELECT 'policy', 'pg_policy'::regclass, p.oid, 0 FROM pg_policy p JOIN pg_class c ON c.oid = p.polrelid
        WHERE ${IN_SELECTION('c.relnamespace')}
       UNION ALL SELECT 'row level security', 'pg_class'::regclass, c.oid, 0 FROM pg_class c
        WHERE (c.relrowsecurity OR c.relforcerowsecurity) AND ${IN_SELECTION('c.relnamespace')}
       UNION ALL ${scoped.join('\n       UNION ALL ')}
       UNION ALL ${builtInFamilyMembers(IN_SELECTION)}
       UNION ALL SELECT 'event trigger', 'pg_event_trigger'::regclass, oid, 0 FROM pg_event_trigger
        WHERE evtname NOT IN ('pgferry_capture_ddl', 'pgferry_capture_drop')
       UNION ALL SELECT 'publication', 'pg_publication'::regclass, oid, 0 FROM pg_publication WHERE pubname <> ALL($2::text[])
       ${subscriptions}
       UNION ALL SELECT 'default privileges', 'pg_default_acl'::regclass, oid, 0 FROM pg_default_acl
        WHERE defaclnamespace = 0 OR ${IN_SELECTION('defaclnamespace')}
     ),
     acl(classid, objid, sub, acl) AS (
       SELECT 'pg_class'::regclass, c.oid, 0, c.relacl::text FROM pg_class c
        WHERE c.relacl IS NOT NULL AND c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f') AND ${IN_SELECTION('c.relnamespace')}
       UNION ALL SELECT 'pg_class'::regclass, a.attrelid, a.attnum, a.attacl::text FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
        WHERE a.attacl IS NOT NULL AND ${IN_SELECTION('c.relnamespace')}
       UNION ALL SELECT 'pg_proc'::regclass, oid, 0, proacl::text FROM pg_proc WHERE proacl IS NOT NULL AND ${IN_SELECTION('pronamespace')}
       UNION ALL SELECT 'pg_type'::regclass, oid, 0, typacl::text FROM pg_type WHERE typacl IS NOT NULL AND ${IN_SELECTION('typnamespace')}
       -- public's default ACL is the same on every database: not worth a line.
       UNION ALL SELECT 'pg_namespace'::regclass, oid, 0, nspacl::text FROM pg_namespace
        WHERE nspacl IS NOT NULL AND ${IN_SELECTION('oid')} AND nspname <> 'public'
     ),
     owners(owner) AS (
       SELECT relowner FROM pg_class WHERE relkind IN ('r', 'p', 'v', 'm', 'S', 'f') AND ${IN_SELECTION('relnamespace')}
       UNION ALL SELECT proowner FROM pg_proc WHERE ${IN_SELECTION('pronamespace')}
       UNION ALL SELECT typowner FROM pg_type WHERE typtype IN ('e', 'd', 'r') AND ${IN_SELECTION('typnamespace')}
       UNION ALL SELECT nspowner FROM pg_namespace WHERE ${IN_SELECTION('oid')} AND nspname <> 'public'
     ),
     member AS (SELECT classid, objid FROM pg_depend WHERE deptype = 'e')
     SELECT f.kind,
            -- functions as everywhere else in the report: name(identity arguments)
            coalesce((SELECT format('%I.%I(%s)', n.nspname, p.proname, oidvectortypes(p.proargtypes))
                        FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
                       WHERE f.classid = 'pg_proc'::regclass AND p.oid = f.objid), o.identity) AS identity,
            NULL AS detail
       FROM found f, pg_identify_object(f.classid, f.objid, f.sub) o
      WHERE NOT EXISTS (SELECT 1 FROM member m WHERE m.classid = f.classid AND m.objid = f.objid)
     UNION ALL
     SELECT 'comment', o.type || ' ' || o.identity, 'comments are not migrated'
       FROM pg_description d, pg_identify_object(d.classoid, d.objoid, d.objsubid) o
      WHERE d.objoid >= 16384
        AND (o.schema = ANY($1::text[]) OR (d.classoid = 'pg_namespace'::regclass AND d.objoid IN (SELECT oid FROM sel)))
        AND NOT (d.classoid = 'pg_namespace'::regclass AND o.identity = 'public' AND d.description = 'standard public schema')
        AND NOT EXISTS (SELECT 1 FROM member m WHERE m.classid = d.classoid AND m.objid = d.objoid)
     UNION ALL
     SELECT 'grant', o.type || ' ' || o.identity, 'privileges are not migrated: ' || a.acl
       FROM acl a, pg_identify_object(a.classid, a.objid, a.sub) o
      WHERE NOT EXISTS (SELECT 1 FROM member m WHERE m.classid = a.classid AND m.objid = a.objid)
     UNION ALL
     SELECT 'role', quote_ident(r.rolname),
            format('owns %s object(s) in the selected schemas; roles and ownership are not migrated: the migrating user owns what it creates', count(*))
       FROM owners JOIN pg_roles r ON r.oid = owners.owner
      WHERE r.rolname <> current_user
      GROUP BY r.rolname
     ORDER BY 1, 2`,
    [schemas, spec.cdc.publicationName ? [spec.cdc.publicationName] : []],
  );
  return rows.map((r) => ({
    kind: r.kind,
    identity: r.identity,
    status: 'not_migrated',
    detail: r.detail ?? DETAIL[r.kind] ?? `pgferry does not create ${r.kind} objects yet`,
  }));
}

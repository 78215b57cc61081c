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
];

const DETAIL: Record<string, string> = {
  type: 'base and shell types are not migrated',
  'foreign table': 'foreign tables, their servers and user mappings are not migrated',
  'event trigger': 'event triggers are not migrated',
  publication: 'publications are not migrated',
  subscription: 'subscriptions are not migrated',
  'operator family member': 'members added to an operator family pgferry does not create (a built-in one) are not migrated',
  'access method': 'access methods are not migrated: create it on the target (usually with its extension)',
  language: 'procedural languages outside extensions are not migrated: create it on the target',
  transform: 'transforms are not migrated: create it on the target',
  'security label': 'security labels are not migrated: the target needs the same label provider',
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
       ${scoped.join('\n       UNION ALL ')}
       UNION ALL ${builtInFamilyMembers(IN_SELECTION)}
       UNION ALL SELECT 'event trigger', 'pg_event_trigger'::regclass, oid, 0 FROM pg_event_trigger
        WHERE evtname NOT IN ('pgferry_capture_ddl', 'pgferry_capture_drop')
       UNION ALL SELECT 'publication', 'pg_publication'::regclass, oid, 0 FROM pg_publication WHERE pubname <> ALL($2::text[])
       ${subscriptions}
       UNION ALL SELECT 'access method', 'pg_am'::regclass, oid, 0 FROM pg_am WHERE oid >= 16384
       UNION ALL SELECT 'language', 'pg_language'::regclass, oid, 0 FROM pg_language WHERE oid >= 16384
       UNION ALL SELECT 'transform', 'pg_transform'::regclass, oid, 0 FROM pg_transform WHERE oid >= 16384
       UNION ALL SELECT 'security label', classoid, objoid, objsubid FROM pg_seclabel WHERE objoid >= 16384
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
     SELECT 'database setting', CASE WHEN s.setrole = 0 THEN 'database ' || quote_ident(current_database())
                                     ELSE 'role ' || quote_ident(r.rolname) || ' in database ' || quote_ident(current_database()) END,
            format('ALTER %s SET is not migrated: %s', CASE WHEN s.setrole = 0 THEN 'DATABASE' ELSE 'ROLE … IN DATABASE' END, array_to_string(s.setconfig, ', '))
       FROM pg_db_role_setting s LEFT JOIN pg_roles r ON r.oid = s.setrole
      WHERE s.setdatabase = (SELECT oid FROM pg_database WHERE datname = current_database())
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

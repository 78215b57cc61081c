/** Default privileges (pg_default_acl): ALTER DEFAULT PRIVILEGES FOR ROLE … [IN SCHEMA …] GRANT/REVOKE, as on the source. */
import type pg from 'pg';
import { quoteIdent } from '../sql.js';
import type { PostDataRun } from './postdata.js';
import { SELECTED } from './roles.js';
import { ACL_ITEMS, aclStatements, type AclItem, type Grantees } from './acl.js';

export interface DefaultAclRow {
  role: string;
  schema: string | null;
  objtype: string;
  acl: AclItem[];
  baseline: AclItem[];
}

const OBJECTS: Record<string, string> = { r: 'TABLES', S: 'SEQUENCES', f: 'FUNCTIONS', T: 'TYPES', n: 'SCHEMAS' };

/**
 * The database-wide default privileges, and those of the selected schemas. A database-wide
 * entry replaces the built-in default (acldefault); a schema's only adds to it.
 */
export async function readDefaultPrivileges(source: pg.Client, schemas: string[]): Promise<DefaultAclRow[]> {
  const { rows } = await source.query<DefaultAclRow>(
    `WITH ${SELECTED}
     SELECT pg_get_userbyid(d.defaclrole) AS role, CASE WHEN d.defaclnamespace <> 0 THEN quote_ident(n.nspname) END AS schema,
            d.defaclobjtype::text AS objtype, (${ACL_ITEMS('d.defaclacl')}) AS acl,
            CASE WHEN d.defaclnamespace = 0
                 THEN (${ACL_ITEMS(`acldefault(CASE d.defaclobjtype WHEN 'S' THEN 's' ELSE d.defaclobjtype END::"char", d.defaclrole)`)})
                 ELSE '[]'::jsonb END AS baseline
       FROM pg_default_acl d LEFT JOIN pg_namespace n ON n.oid = d.defaclnamespace
      WHERE d.defaclnamespace = 0 OR d.defaclnamespace IN (SELECT oid FROM sel)
      ORDER BY 1, 2 NULLS FIRST, 3`,
    [schemas],
  );
  return rows;
}

const entryKey = (d: DefaultAclRow) => JSON.stringify([d.role, d.schema, d.objtype]);
const sameItems = (a: AclItem[], b: AclItem[]) => JSON.stringify(a.map((i) => JSON.stringify(i)).sort()) === JSON.stringify(b.map((i) => JSON.stringify(i)).sort());

export async function setDefaultPrivileges(run: PostDataRun, defaults: DefaultAclRow[], schemas: string[], roles: Set<string>, grantees: Grantees): Promise<void> {
  const onTarget = new Map((await readDefaultPrivileges(run.target, schemas)).map((d) => [entryKey(d), d]));
  for (const d of defaults) {
    const there = onTarget.get(entryKey(d));
    if (there && sameItems(there.acl, d.acl)) continue; // already as on the source (a re-run)
    const scope = `${quoteIdent(d.role)}${d.schema ? ` in schema ${d.schema}` : ''}`;
    const identity = `${OBJECTS[d.objtype]?.toLowerCase()} of ${scope}`;
    if (!roles.has(d.role)) {
      run.report('default privileges', identity, 'skipped', `role ${quoteIdent(d.role)} does not exist on the target; create it (or set schema.sync.roles) and migrate again`);
      continue;
    }
    // Only the source's changes: the target starts from its own built-in default for the role.
    const source = { owner: d.role, acl: d.acl, baseline: d.baseline };
    const unchanged = { owner: d.role, acl: d.baseline, baseline: d.baseline };
    const changes = aclStatements(source, unchanged, { object: OBJECTS[d.objtype]! }, grantees, `default privileges (${identity})`).statements;
    const prefix = `ALTER DEFAULT PRIVILEGES FOR ROLE ${quoteIdent(d.role)}${d.schema ? ` IN SCHEMA ${d.schema}` : ''} `;
    if (!changes.length) continue;
    try {
      await run.run('default privileges', identity, changes.map((c) => prefix + c), 'set');
      run.report('default privileges', identity, 'created', changes.join('; '));
    } catch (error) {
      if ((error as { cause?: { code?: string } }).cause?.code !== '42501') throw error;
      run.report('default privileges', identity, 'skipped', `${(error as Error).message}: the target user must be a member of ${quoteIdent(d.role)}`);
    }
  }
}

/**
 * Precheck of what the schema migration will do with roles, owners and row-level security, said
 * before anything is written: roles the migrated objects reference that the target lacks, owners
 * the target user cannot hand objects to without losing its access, and FORCE ROW LEVEL SECURITY
 * left to after cutover. Warnings: the migration runs, and the report names each object again.
 */
import type pg from 'pg';
import { listTables } from '../catalog/tables.js';
import { quoteIdent } from '../sql.js';
import type { MigrationSpec } from '../spec/index.js';
import { userSchemas } from '../schema/definitions.js';
import { selectSchemas, uniqueTables } from '../schema/plan.js';
import { referencedRoles, rolesOnTarget, targetUser } from '../schema/roles.js';
import type { CheckResult } from './index.js';

const listed = (names: string[]) => names.slice(0, 10).join(', ') + (names.length > 10 ? ` and ${names.length - 10} more` : '');

export async function checkSecurity(source: pg.Client, target: pg.Client, spec: Pick<MigrationSpec, 'objects' | 'schema'>): Promise<CheckResult> {
  const id = 'target.security';
  const tables = uniqueTables(await listTables(source, spec.objects));
  const schemaRows = await userSchemas(source);
  const selected = new Set(selectSchemas(spec, schemaRows.map((s) => s.name), tables));
  const roles = await referencedRoles(source, schemaRows.filter((s) => selected.has(s.name)).map((s) => s.identity));
  const [existing, user] = [await rolesOnTarget(target), await targetUser(target)];
  const missing = roles.filter((r) => !existing.has(r.name));
  const messages: string[] = [];
  const remedies: string[] = [];
  if (missing.length && !spec.schema.sync.roles) {
    messages.push(`Roles the migrated objects reference do not exist on the target: ${listed(missing.map((r) => `${quoteIdent(r.name)} (${r.uses.join(', ')})`))}; what they own stays with ${quoteIdent(user.name)}, their privileges and policies are not created.`);
    remedies.push('Create these roles on the target, or set schema.sync.roles to true.');
  }
  if (missing.length && spec.schema.sync.roles && !user.superuser && !user.createrole) {
    messages.push(`schema.sync.roles cannot create ${listed(missing.map((r) => quoteIdent(r.name)))}: the target user ${quoteIdent(user.name)} has neither SUPERUSER nor CREATEROLE.`);
    remedies.push(`Give ${quoteIdent(user.name)} CREATEROLE, or create the roles on the target.`);
  }
  if (!user.superuser) {
    const owners = roles.filter((r) => r.uses.includes('owner') && r.name !== user.name).map((r) => r.name);
    const { rows } = await target.query<{ role: string }>(
      // CASE: pg_has_role fails on a role that does not exist
      `SELECT r AS role FROM unnest($1::text[]) r
        WHERE CASE WHEN EXISTS (SELECT 1 FROM pg_roles WHERE rolname = r) THEN NOT pg_has_role(r, 'USAGE') ELSE true END ORDER BY 1`,
      [owners],
    );
    if (rows.length) {
      const names = rows.map((r) => quoteIdent(r.role));
      messages.push(`${quoteIdent(user.name)} is not a member of ${listed(names)}: what they own on the source stays owned by ${quoteIdent(user.name)}, which would otherwise lose the access the load, CDC apply and the comparison need.`);
      remedies.push(`GRANT ${names.join(', ')} TO ${quoteIdent(user.name)} on the target to keep the source's owners, or change the owners after cutover.`);
    }
    const forced = await source.query<{ identity: string }>(
      `SELECT format('%I.%I', n.nspname, c.relname) AS identity FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE c.oid = ANY($1::oid[]) AND c.relforcerowsecurity ORDER BY 1`,
      [tables.map((t) => t.oid)],
    );
    if (forced.rows.length && !user.bypassrls) {
      messages.push(`FORCE ROW LEVEL SECURITY of ${listed(forced.rows.map((r) => r.identity))} will be left off: ${quoteIdent(user.name)} is neither superuser nor BYPASSRLS, and the policies would filter the writes of CDC apply and the comparison.`);
      remedies.push('Run ALTER TABLE … FORCE ROW LEVEL SECURITY on those tables after cutover, or give the target user BYPASSRLS.');
    }
  }
  if (!messages.length) return { id, status: 'pass', message: `The ${roles.length} role(s) the migrated objects reference can own and be granted them on the target.` };
  return { id, status: 'warn', message: messages.join(' '), remediation: remedies.join(' ') };
}

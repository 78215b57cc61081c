/**
 * Precheck of cutover.fenceSource: the source user can put up the fence of engine/cutover/fence.ts
 * at cutover (a trigger on every selected table, a schema for its function, the database's
 * read-only default), so that a cutover never fails for a privilege after hours of replication.
 */
import type pg from 'pg';
import type { SourceSelection } from './fidelity.js';
import type { CheckResult } from './index.js';

const LISTED = 10;

export async function checkFencePrivileges(source: pg.Client, { plan }: SourceSelection): Promise<CheckResult> {
  const id = 'source.fence';
  const tables = plan.tables;
  const { rows } = await source.query<{ name: string; schema: string }>(
    `SELECT format('%I.%I', n.nspname, c.relname) AS name, quote_ident(n.nspname) AS schema
       FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
      WHERE c.oid = ANY($1::oid[]) AND NOT has_table_privilege(c.oid, 'TRIGGER')
      ORDER BY 1`,
    [tables.map((t) => t.oid)],
  );
  const facts = await source.query<{ user: string; database: string; owner: string; can_create: boolean; can_alter: boolean }>(
    `SELECT quote_ident(current_user) AS user, quote_ident(d.datname) AS database, quote_ident(o.rolname) AS owner,
            has_database_privilege(d.oid, 'CREATE') AS can_create,
            (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) OR pg_has_role(d.datdba, 'MEMBER') AS can_alter
       FROM pg_database d JOIN pg_roles o ON o.oid = d.datdba WHERE d.datname = current_database()`,
  );
  const { user, database, owner, can_create, can_alter } = facts.rows[0]!;
  const problems: string[] = [];
  const fixes: string[] = [];
  if (rows.length > 0) {
    const names = rows.map((r) => r.name);
    problems.push(`no TRIGGER privilege on ${names.length} selected table(s): ${names.slice(0, LISTED).join(', ')}${names.length > LISTED ? ', …' : ''}`);
    fixes.push(
      names.length > LISTED
        ? [...new Set(rows.map((r) => r.schema))].map((schema) => `GRANT TRIGGER ON ALL TABLES IN SCHEMA ${schema} TO ${user};`).join(' ')
        : `GRANT TRIGGER ON ${names.join(', ')} TO ${user};`,
    );
  }
  if (!can_create) {
    problems.push(`no CREATE privilege on database ${database} (for the fence's schema pgferry_fence)`);
    fixes.push(`GRANT CREATE ON DATABASE ${database} TO ${user};`);
  }
  if (!can_alter) {
    problems.push(`not the owner of database ${database} (ALTER DATABASE … SET default_transaction_read_only needs it)`);
    fixes.push(`GRANT ${owner} TO ${user};`);
  }
  if (problems.length === 0) {
    return { id, status: 'pass', message: `The source user may fence the ${tables.length} selected table(s) at cutover (cutover.fenceSource).` };
  }
  return {
    id,
    status: 'fail',
    message: `cutover.fenceSource: the source user cannot fence the source at cutover: ${problems.join('; ')}.`,
    remediation: `On the source, run: ${fixes.join(' ')} Or set cutover.fenceSource to false (writes after cutover are then not refused).`,
  };
}

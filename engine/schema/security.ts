/**
 * Post-data objects that guard or describe the tables: extended statistics, rules, row-level
 * security policies with ENABLE/FORCE ROW LEVEL SECURITY; and the reading of everything the
 * later post-data steps need (comments, owners, privileges), in one source snapshot.
 */
import type pg from 'pg';
import { quoteIdent } from '../sql.js';
import type { SchemaPlan } from './plan.js';
import type { PostDataRun } from './postdata.js';
import { FIRES_AS_REPLICA } from './replica-triggers.js';
import { readSource } from './objects.js';
import { readComments, type CommentRow } from './comments.js';
import { readDefaultPrivileges, readOwnedObjects, type DefaultAclRow, type OwnedObject } from './privileges.js';
import { rolesOnTarget, targetUser } from './roles.js';

interface StatisticsRow {
  identity: string;
  def: string;
  target: number | null;
  table_identity: string;
}

interface RuleRow {
  identity: string;
  name: string;
  table_identity: string;
  def: string;
  enabled: string;
}

interface PolicyRow {
  identity: string;
  name: string;
  table_identity: string;
  permissive: boolean;
  command: string;
  roles: (string | null)[];
  qual: string | null;
  with_check: string | null;
}

interface RowSecurityRow {
  table_identity: string;
  enabled: boolean;
  forced: boolean;
}

export interface SecurityCatalog {
  /** The schemas the plan creates, quoted. */
  schemas: string[];
  statistics: StatisticsRow[];
  rules: RuleRow[];
  policies: PolicyRow[];
  rowSecurity: RowSecurityRow[];
  comments: CommentRow[];
  owned: OwnedObject[];
  defaultPrivileges: DefaultAclRow[];
}

/** Reads, in one source snapshot, what the security steps of post-data create. */
export async function readSecurityCatalog(sourceConnect: () => Promise<pg.Client>, plan: SchemaPlan): Promise<SecurityCatalog> {
  const tables = plan.tables.map((t) => t.oid);
  const relations = [...tables, ...plan.nodes.filter((n) => n.kind === 'view' || n.kind === 'materialized view').map((n) => Number(n.key.slice(4)))];
  const schemas = plan.schemas.map((s) => s.identity);
  const source = await sourceConnect();
  try {
    // Columns not created on the target (objects.excludedColumns "drop") get no comment nor grant there.
    const dropped = new Set(plan.dropped.map((d) => d.identity));
    return await readSource(source, async () => ({
      schemas,
      ...(await readTableSecurity(source, tables, relations)),
      comments: (await readComments(source, schemas)).filter((c) => !(c.type.endsWith(' column') && dropped.has(c.identity))),
      owned: (await readOwnedObjects(source, schemas)).filter((o) => !(o.category === 'col' && dropped.has(o.identity))),
      defaultPrivileges: await readDefaultPrivileges(source, schemas),
    }));
  } finally {
    await source.end().catch(() => undefined);
  }
}

async function readTableSecurity(source: pg.Client, tables: number[], relations: number[]) {
  const { rows: statistics } = await source.query<StatisticsRow>(
    `SELECT format('%I.%I', n.nspname, s.stxname) AS identity, pg_get_statisticsobjdef(s.oid) AS def,
            nullif(s.stxstattarget, -1)::int AS target, format('%I.%I', tn.nspname, t.relname) AS table_identity
       FROM pg_statistic_ext s JOIN pg_namespace n ON n.oid = s.stxnamespace
       JOIN pg_class t ON t.oid = s.stxrelid JOIN pg_namespace tn ON tn.oid = t.relnamespace
      WHERE s.stxrelid = ANY($1::oid[]) ORDER BY 1`,
    [tables],
  );
  const { rows: rules } = await source.query<RuleRow>(
    `SELECT format('%I on %I.%I', r.rulename, n.nspname, c.relname) AS identity, quote_ident(r.rulename) AS name,
            format('%I.%I', n.nspname, c.relname) AS table_identity, pg_get_ruledef(r.oid) AS def, r.ev_enabled::text AS enabled
       FROM pg_rewrite r JOIN pg_class c ON c.oid = r.ev_class JOIN pg_namespace n ON n.oid = c.relnamespace
      WHERE r.ev_class = ANY($1::oid[]) AND r.rulename <> '_RETURN' ORDER BY 1`,
    [relations],
  );
  const { rows: policies } = await source.query<PolicyRow>(
    `SELECT format('%I on %I.%I', p.polname, n.nspname, c.relname) AS identity, quote_ident(p.polname) AS name,
            format('%I.%I', n.nspname, c.relname) AS table_identity, p.polpermissive AS permissive, p.polcmd::text AS command,
            ARRAY(SELECT CASE WHEN r = 0 THEN NULL ELSE pg_get_userbyid(r)::text END FROM unnest(p.polroles) r) AS roles,
            pg_get_expr(p.polqual, p.polrelid) AS qual, pg_get_expr(p.polwithcheck, p.polrelid) AS with_check
       FROM pg_policy p JOIN pg_class c ON c.oid = p.polrelid JOIN pg_namespace n ON n.oid = c.relnamespace
      WHERE p.polrelid = ANY($1::oid[]) ORDER BY 1`,
    [tables],
  );
  const { rows: rowSecurity } = await source.query<RowSecurityRow>(
    `SELECT format('%I.%I', n.nspname, c.relname) AS table_identity, c.relrowsecurity AS enabled, c.relforcerowsecurity AS forced
       FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
      WHERE c.oid = ANY($1::oid[]) AND (c.relrowsecurity OR c.relforcerowsecurity) ORDER BY 1`,
    [tables],
  );
  return { statistics, rules, policies, rowSecurity };
}

async function existingSecurityObjects(target: pg.Client): Promise<Set<string>> {
  const { rows } = await target.query<{ key: string }>(
    `SELECT 'statistics ' || format('%I.%I', n.nspname, s.stxname) AS key FROM pg_statistic_ext s JOIN pg_namespace n ON n.oid = s.stxnamespace
     UNION ALL SELECT 'rule ' || format('%I on %I.%I', r.rulename, n.nspname, c.relname)
       FROM pg_rewrite r JOIN pg_class c ON c.oid = r.ev_class JOIN pg_namespace n ON n.oid = c.relnamespace
     UNION ALL SELECT 'policy ' || format('%I on %I.%I', p.polname, n.nspname, c.relname)
       FROM pg_policy p JOIN pg_class c ON c.oid = p.polrelid JOIN pg_namespace n ON n.oid = c.relnamespace`,
  );
  return new Set(rows.map((r) => r.key));
}

/**
 * Extended statistics objects, after the indexes (expression statistics may match an index's
 * expressions), then ANALYZE of their tables where the load already analyzed them: ANALYZE is
 * what fills a statistics object.
 */
export async function createStatistics({ target, builtDuringLoad, report, run, runAll }: PostDataRun, security: SecurityCatalog): Promise<void> {
  const existing = await existingSecurityObjects(target);
  const analyzeAgain = new Set<string>();
  for (const s of security.statistics) {
    if (existing.has(`statistics ${s.identity}`)) {
      report('statistics', s.identity, 'existing');
      continue;
    }
    const sql = [s.def, ...(s.target !== null ? [`ALTER STATISTICS ${s.identity} SET STATISTICS ${s.target}`] : [])];
    await run('statistics', s.identity, sql);
    report('statistics', s.identity, 'created', s.target !== null ? `statistics target ${s.target}` : undefined);
    if (builtDuringLoad.get(`analyze ${s.table_identity}`) === 'done') analyzeAgain.add(s.table_identity);
  }
  await runAll([...analyzeAgain].map((t) => ({ kind: 'table', identity: t, sql: [`ANALYZE ${t}`], action: 'analyze' })));
}

export const RULE_STATE: Record<string, string> = { D: 'DISABLE RULE', R: 'ENABLE REPLICA RULE', A: 'ENABLE ALWAYS RULE' };
const COMMAND: Record<string, string> = { r: 'SELECT', a: 'INSERT', w: 'UPDATE', d: 'DELETE', '*': 'ALL' };

/**
 * Rules, with their enabled state. The applier runs with session_replication_role = replica, so
 * ENABLE ALWAYS and ENABLE REPLICA rules would rewrite its writes: in the CDC modes they stay
 * disabled until cutover, like such triggers (schema.replicaTriggers, engine/schema/replica-triggers.ts).
 */
export async function createRules({ target, deferReplicaTriggers, report, run }: PostDataRun, security: SecurityCatalog): Promise<void> {
  const existing = await existingSecurityObjects(target);
  for (const rule of security.rules) {
    if (existing.has(`rule ${rule.identity}`)) {
      report('rule', rule.identity, 'existing');
      continue;
    }
    // A view's rules are always enabled (PostgreSQL cannot alter them): only a table's can have a state.
    const deferred = deferReplicaTriggers && FIRES_AS_REPLICA.has(rule.enabled);
    const state = RULE_STATE[deferred ? 'D' : rule.enabled];
    const sql = [rule.def, ...(state ? [`ALTER TABLE ${rule.table_identity} ${state} ${rule.name}`] : [])];
    await run('rule', rule.identity, sql);
    const detail = deferred
      ? `disabled until cutover, then ${RULE_STATE[rule.enabled]!.replace(' RULE', '').toLowerCase()} (schema.replicaTriggers "disabled")`
      : state?.replace(' RULE', '').toLowerCase();
    report('rule', rule.identity, 'created', detail);
  }
}

/** Row-level security policies, with their roles (a policy naming a role the target lacks is named, not created). */
export async function createPolicies({ target, report, run }: PostDataRun, security: SecurityCatalog): Promise<void> {
  const existing = await existingSecurityObjects(target);
  const roles = await rolesOnTarget(target);
  for (const p of security.policies) {
    if (existing.has(`policy ${p.identity}`)) {
      report('policy', p.identity, 'existing');
      continue;
    }
    const missing = p.roles.filter((r): r is string => r !== null && !roles.has(r));
    if (missing.length) {
      const names = missing.map(quoteIdent).join(', ');
      report('policy', p.identity, 'skipped', `its role(s) ${names} do not exist on the target: create them (or set schema.sync.roles) and migrate again`);
      continue;
    }
    const to = p.roles.map((r) => (r === null ? 'PUBLIC' : quoteIdent(r))).join(', ');
    let sql = `CREATE POLICY ${p.name} ON ${p.table_identity} AS ${p.permissive ? 'PERMISSIVE' : 'RESTRICTIVE'} FOR ${COMMAND[p.command]} TO ${to}`;
    if (p.qual !== null) sql += ` USING (${p.qual})`;
    if (p.with_check !== null) sql += ` WITH CHECK (${p.with_check})`;
    await run('policy', p.identity, [sql]);
    report('policy', p.identity, 'created');
  }
}

/**
 * ENABLE / FORCE ROW LEVEL SECURITY, after the policies. The load is over; the CDC applier and the
 * comparison keep reading and writing as the target user, which row-level security leaves
 * alone as long as it owns the table (or is a member of its owner) and the table does not
 * FORCE it — unless it is a superuser or has BYPASSRLS. So FORCE is set only for such a user;
 * for any other it is left off and named, to set after cutover: set now, the applier's
 * UPDATEs and DELETEs would silently miss rows the policies hide, and its INSERTs would fail.
 */
export async function setRowSecurity({ target, report, run }: PostDataRun, security: SecurityCatalog): Promise<void> {
  const user = await targetUser(target);
  const bypasses = user.superuser || user.bypassrls;
  for (const t of security.rowSecurity) {
    const sql = [
      ...(t.enabled ? [`ALTER TABLE ${t.table_identity} ENABLE ROW LEVEL SECURITY`] : []),
      ...(t.forced && bypasses ? [`ALTER TABLE ${t.table_identity} FORCE ROW LEVEL SECURITY`] : []),
    ];
    if (sql.length) await run('row level security', t.table_identity, sql, 'alter');
    if (t.forced && !bypasses)
      report(
        'row level security',
        t.table_identity,
        'skipped',
        `${t.enabled ? 'enabled; ' : ''}FORCE ROW LEVEL SECURITY left off: the target user ${quoteIdent(user.name)} is neither superuser nor BYPASSRLS, ` +
          `so the policies would filter the writes of CDC apply and the comparison; run ALTER TABLE ${t.table_identity} FORCE ROW LEVEL SECURITY after cutover`,
      );
    else report('row level security', t.table_identity, 'created', [t.enabled && 'enabled', t.forced && 'forced'].filter(Boolean).join(', '));
  }
}

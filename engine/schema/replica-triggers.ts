/**
 * Triggers and rules set to ENABLE ALWAYS or ENABLE REPLICA fire even under
 * session_replication_role = replica, so in the CDC modes post-data creates them disabled
 * (schema.replicaTriggers "disabled"): their side effects would otherwise collide with the rows
 * replicated from the source. At cutover, once drained, they get their source state back.
 */
import type pg from 'pg';
import { renamedRelations } from '../control/index.js';
import { listTables } from '../catalog/tables.js';
import type { MigrationSpec } from '../spec/index.js';
import { readSource, runFor, type SchemaObjectResult } from './objects.js';
import { uniqueTables } from './plan.js';

export const ENABLE: Record<string, string> = { D: 'DISABLE TRIGGER', R: 'ENABLE REPLICA TRIGGER', A: 'ENABLE ALWAYS TRIGGER' };
const RULE_ENABLE: Record<string, string> = { R: 'ENABLE REPLICA RULE', A: 'ENABLE ALWAYS RULE' };
/** pg_trigger.tgenabled and pg_rewrite.ev_enabled states that fire under session_replication_role = replica. */
export const FIRES_AS_REPLICA = new Set(['A', 'R']);

export interface ReplicaTrigger {
  kind: 'trigger' | 'rule';
  /** Triggers `schema.table.name`, rules `name on schema.table` (as the report names them). */
  identity: string;
  tableIdentity: string;
  name: string;
  /** pg_trigger.tgenabled / pg_rewrite.ev_enabled on the source: 'A' (always) or 'R' (replica). */
  enabled: string;
}

/** The selected tables' triggers and rules that fire in replica-role sessions, read on the source. */
export async function replicaTriggers(source: pg.Client, objects: MigrationSpec['objects']): Promise<ReplicaTrigger[]> {
  return readSource(source, async () => {
    const oids = uniqueTables(await listTables(source, objects)).map((t) => t.oid);
    const { rows } = await source.query<ReplicaTrigger>(
      `SELECT 'trigger' AS kind, format('%I.%I.%I', n.nspname, c.relname, t.tgname) AS identity, format('%I.%I', n.nspname, c.relname) AS "tableIdentity",
              quote_ident(t.tgname) AS name, t.tgenabled::text AS enabled
         FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE t.tgrelid = ANY($1::oid[]) AND NOT t.tgisinternal AND t.tgparentid = 0 AND t.tgenabled = ANY($2::"char"[])
       UNION ALL
       SELECT 'rule', format('%I on %I.%I', r.rulename, n.nspname, c.relname), format('%I.%I', n.nspname, c.relname),
              quote_ident(r.rulename), r.ev_enabled::text
         FROM pg_rewrite r JOIN pg_class c ON c.oid = r.ev_class JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE r.ev_class = ANY($1::oid[]) AND r.rulename <> '_RETURN' AND r.ev_enabled = ANY($2::"char"[])
        ORDER BY 1, 2`,
      [oids, [...FIRES_AS_REPLICA]],
    );
    return rows;
  });
}

/** At cutover: the replica-firing triggers and rules that post-data left disabled get their source state. */
export async function restoreReplicaTriggers(source: pg.Client, target: pg.Client, spec: MigrationSpec): Promise<SchemaObjectResult[]> {
  if (spec.mode === 'full' || spec.schema.replicaTriggers !== 'disabled') return [];
  const firing = await replicaTriggers(source, spec.objects);
  const { rows } = await target.query<{ identity: string }>(
    `SELECT 'trigger ' || format('%I.%I.%I', n.nspname, c.relname, t.tgname) AS identity
       FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid JOIN pg_namespace n ON n.oid = c.relnamespace
      WHERE t.tgenabled = 'D'
     UNION ALL
     SELECT 'rule ' || format('%I on %I.%I', r.rulename, n.nspname, c.relname)
       FROM pg_rewrite r JOIN pg_class c ON c.oid = r.ev_class JOIN pg_namespace n ON n.oid = c.relnamespace
      WHERE r.ev_enabled = 'D'`,
  );
  const disabled = new Set(rows.map((r) => r.identity));
  // Name mapping may have renamed their tables; a trigger's or rule's own name stays.
  const renamed = await renamedRelations(target, spec.name);
  const results: SchemaObjectResult[] = [];
  for (const object of firing) {
    const table = renamed.get(object.tableIdentity) ?? object.tableIdentity;
    const identity = object.kind === 'trigger' ? `${table}.${object.name}` : `${object.name} on ${table}`;
    if (!disabled.has(`${object.kind} ${identity}`)) continue;
    const state = (object.kind === 'trigger' ? ENABLE : RULE_ENABLE)[object.enabled]!;
    await runFor(target, object.kind, identity, [`ALTER TABLE ${table} ${state} ${object.name}`], 'enable');
    const words = state.replace(/ (TRIGGER|RULE)$/, '').toLowerCase();
    results.push({ kind: object.kind, identity, status: 'created', detail: `${words} since cutover (disabled while replicating)` });
  }
  return results;
}

/**
 * Triggers set to ENABLE ALWAYS or ENABLE REPLICA fire even under session_replication_role =
 * replica, so in the CDC modes post-data creates them disabled (schema.replicaTriggers
 * "disabled"): their side effects would otherwise collide with the rows replicated from the
 * source. At cutover, once drained, they get their source state back.
 */
import type pg from 'pg';
import { listTables } from '../catalog/tables.js';
import type { MigrationSpec } from '../spec/index.js';
import { readSource, runFor, type SchemaObjectResult } from './objects.js';
import { uniqueTables } from './plan.js';
import { ENABLE, FIRES_AS_REPLICA } from './postdata.js';

export interface ReplicaTrigger {
  identity: string;
  tableIdentity: string;
  name: string;
  /** pg_trigger.tgenabled on the source: 'A' (always) or 'R' (replica). */
  enabled: string;
}

/** The selected tables' triggers that fire in replica-role sessions, read on the source. */
export async function replicaTriggers(source: pg.Client, objects: MigrationSpec['objects']): Promise<ReplicaTrigger[]> {
  return readSource(source, async () => {
    const oids = uniqueTables(await listTables(source, objects)).map((t) => t.oid);
    const { rows } = await source.query<ReplicaTrigger>(
      `SELECT format('%I.%I.%I', n.nspname, c.relname, t.tgname) AS identity, format('%I.%I', n.nspname, c.relname) AS "tableIdentity",
              quote_ident(t.tgname) AS name, t.tgenabled::text AS enabled
         FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE t.tgrelid = ANY($1::oid[]) AND NOT t.tgisinternal AND t.tgparentid = 0 AND t.tgenabled = ANY($2::"char"[])
        ORDER BY 1`,
      [oids, [...FIRES_AS_REPLICA]],
    );
    return rows;
  });
}

/** At cutover: the replica-firing triggers that post-data left disabled get their source state. */
export async function restoreReplicaTriggers(source: pg.Client, target: pg.Client, spec: MigrationSpec): Promise<SchemaObjectResult[]> {
  if (spec.mode === 'full' || spec.schema.replicaTriggers !== 'disabled' || !spec.schema.sync.triggers) return [];
  const triggers = await replicaTriggers(source, spec.objects);
  const { rows } = await target.query<{ identity: string }>(
    `SELECT format('%I.%I.%I', n.nspname, c.relname, t.tgname) AS identity
       FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid JOIN pg_namespace n ON n.oid = c.relnamespace
      WHERE t.tgenabled = 'D' AND format('%I.%I.%I', n.nspname, c.relname, t.tgname) = ANY($1::text[])`,
    [triggers.map((t) => t.identity)],
  );
  const disabled = new Set(rows.map((r) => r.identity));
  const results: SchemaObjectResult[] = [];
  for (const trigger of triggers.filter((t) => disabled.has(t.identity))) {
    const state = ENABLE[trigger.enabled]!;
    await runFor(target, 'trigger', trigger.identity, [`ALTER TABLE ${trigger.tableIdentity} ${state} ${trigger.name}`], 'enable');
    results.push({ kind: 'trigger', identity: trigger.identity, status: 'created', detail: `${state.replace(' TRIGGER', '').toLowerCase()} since cutover (disabled while replicating)` });
  }
  return results;
}

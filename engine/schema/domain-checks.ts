/**
 * A domain's NOT VALID checks: rows on the source may hold values they refuse, so they are added
 * once those rows are in (post-data), and in the CDC modes only at cutover: the applier writes
 * whole rows, so an UPDATE that leaves such a value unchanged on the source would be refused on
 * the target if the check were there already.
 */
import type pg from 'pg';
import type { MigrationSpec } from '../spec/index.js';
import { renamedObjects } from '../control/index.js';
import { readSource, runFor, type SchemaObjectResult } from './objects.js';
import { planSchema, type SchemaPlan } from './plan.js';

export const deferDomainChecksToCutover = (spec: Pick<MigrationSpec, 'mode'>) => spec.mode !== 'full';

export interface DomainCheck {
  identity: string;
  sql: string;
}

/** The plan's NOT VALID domain checks, split by whether the target has them already. */
export async function notValidDomainChecks(target: pg.Client, plan: SchemaPlan): Promise<{ existing: DomainCheck[]; missing: DomainCheck[] }> {
  const checks = plan.nodes.flatMap((n) => n.notValidChecks ?? []);
  if (checks.length === 0) return { existing: [], missing: [] };
  const { rows } = await target.query<{ identity: string }>(
    `SELECT i.identity FROM pg_constraint k JOIN pg_type t ON t.oid = k.contypid JOIN pg_namespace n ON n.oid = t.typnamespace,
            format('%I.%I.%I', n.nspname, t.typname, k.conname) i(identity)
      WHERE i.identity = ANY($1::text[])`,
    [checks.map((c) => c.identity)],
  );
  const present = new Set(rows.map((r) => r.identity));
  return { existing: checks.filter((c) => present.has(c.identity)), missing: checks.filter((c) => !present.has(c.identity)) };
}

/** Post-data of a CDC mode: the checks wait for cutover; each is reported so. */
export function domainChecksAwaitingCutover(plan: SchemaPlan): SchemaObjectResult[] {
  return plan.nodes
    .flatMap((n) => n.notValidChecks ?? [])
    .map((check) => ({
      kind: 'domain constraint',
      identity: check.identity,
      status: 'skipped',
      detail: 'NOT VALID on the source: added at cutover, once the replicated rows (which may hold values it refuses) are in',
    }));
}

/** FinishCutover: the NOT VALID domain checks post-data left for now. */
export async function addDomainChecksAtCutover(source: pg.Client, target: pg.Client, spec: MigrationSpec): Promise<SchemaObjectResult[]> {
  if (!deferDomainChecksToCutover(spec)) return [];
  const plan = await readSource(source, () => planSchema(source, spec));
  // A domain whose schema name mapping moved: its checks name it where it is now.
  const renamed = new Map((await renamedObjects(target, spec.name)).filter((r) => r.kind === 'type').map((r) => [r.sourceIdentity, r.targetIdentity]));
  for (const node of plan.nodes) {
    const to = renamed.get(node.identity);
    if (!to || !node.notValidChecks) continue;
    node.notValidChecks = node.notValidChecks.map((check) => ({
      identity: to + check.identity.slice(node.identity.length),
      sql: check.sql.replace(`ALTER DOMAIN ${node.identity} `, `ALTER DOMAIN ${to} `),
    }));
  }
  const { missing } = await notValidDomainChecks(target, plan);
  for (const check of missing) await runFor(target, 'domain constraint', check.identity, [check.sql]);
  return missing.map((check) => ({ kind: 'domain constraint', identity: check.identity, status: 'created', detail: 'NOT VALID on the source, added at cutover' }));
}

/** Sequence values, copied at cutover (and after a full load): the target continues where the source is. */
import type pg from 'pg';
import { listTables } from '../catalog/tables.js';
import type { MigrationSpec } from '../spec/index.js';
import { sequenceRows, userSchemas } from './definitions.js';
import { readSource, schemaFailed, type SchemaObjectResult } from './objects.js';
import { selectSchemas, uniqueTables } from './plan.js';
import { renamedRelations } from '../control/index.js';

/**
 * Sets every selected sequence on the target (identity and serial ones of selected tables,
 * free-standing ones of selected schemas) to the source's `last_value, is_called`; `back`
 * (fallback), the source's to the target's. Reported with kind 'sequence value', so pre-data's
 * 'sequence' rows stay as they are.
 */
export async function copySequenceValues(source: pg.Client, target: pg.Client, spec: MigrationSpec, { back = false } = {}): Promise<SchemaObjectResult[]> {
  const listed = await readSource(source, async () => {
    const tables = uniqueTables(await listTables(source, spec.objects));
    const selected = new Set(tables.map((t) => t.oid));
    const schemas = new Set(selectSchemas(spec, (await userSchemas(source)).map((s) => s.name), tables));
    return (await sequenceRows(source))
      .filter((s) => (s.owner_deptype === 'i' ? selected.has(s.owner_oid!) : schemas.has(s.schema) || (s.owner_oid !== null && selected.has(s.owner_oid))))
      .map((s) => s.identity);
  });
  // Name mapping renamed them on the target (a sequence owned by a renamed table or column follows it).
  const renamed = await renamedRelations(target, spec.name);
  const pairs = listed.map((identity) => ({ source: identity, target: renamed.get(identity) ?? identity }));
  const [from, to] = back ? [target, source] : [source, target];
  const fromIdentity = (p: (typeof pairs)[number]) => (back ? p.target : p.source);
  const toIdentity = (p: (typeof pairs)[number]) => (back ? p.source : p.target);
  const existing = async (client: pg.Client) => {
    const { rows } = await client.query<{ identity: string }>(
      `SELECT format('%I.%I', n.nspname, c.relname) AS identity FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relkind = 'S'`,
    );
    return new Set(rows.map((r) => r.identity));
  };
  const [onFrom, onTo] = await Promise.all([existing(from), existing(to)]);
  const readable = pairs.filter((p) => onFrom.has(fromIdentity(p)));
  const values = new Map<string, { lastValue: string; isCalled: boolean }>();
  if (readable.length > 0) {
    const { rows } = await from.query<{ i: number; last_value: string; is_called: boolean }>(
      readable.map((p, i) => `SELECT ${i} AS i, last_value::text AS last_value, is_called FROM ${fromIdentity(p)}`).join('\nUNION ALL '),
    );
    for (const v of rows) values.set(fromIdentity(readable[v.i]!), { lastValue: v.last_value, isCalled: v.is_called });
  }
  const results: SchemaObjectResult[] = [];
  for (const pair of pairs) {
    const identity = toIdentity(pair);
    const value = values.get(fromIdentity(pair));
    if (!value || !onTo.has(identity)) {
      results.push({ kind: 'sequence value', identity, status: 'skipped', detail: `the sequence is not on the ${!value ? (back ? 'target' : 'source') : back ? 'source' : 'target'}` });
      continue;
    }
    try {
      await to.query('SELECT setval($1::regclass, $2::bigint, $3)', [identity, value.lastValue, value.isCalled]);
    } catch (error) {
      throw schemaFailed('set', 'sequence', identity, error);
    }
    const other = fromIdentity(pair) === identity ? '' : ` (the ${back ? 'target' : 'source'}'s ${fromIdentity(pair)})`;
    const detail = `last_value ${value.lastValue}${value.isCalled ? '' : ' (not called yet: nextval returns it)'}${other}`;
    results.push({ kind: 'sequence value', identity, status: 'replaced', detail });
  }
  return results;
}

/** Sequence values, copied at cutover (and after a full load): the target continues where the source is. */
import type pg from 'pg';
import { listTables } from '../catalog/tables.js';
import type { MigrationSpec } from '../spec/index.js';
import { sequenceRows, userSchemas } from './definitions.js';
import { readSource, schemaFailed, type SchemaObjectResult } from './objects.js';
import { selectSchemas, uniqueTables } from './plan.js';

/**
 * Sets every selected sequence on the target (identity and serial ones of selected tables,
 * free-standing ones of selected schemas) to the source's `last_value, is_called`.
 * Reported with kind 'sequence value', so pre-data's 'sequence' rows stay as they are.
 */
export async function copySequenceValues(source: pg.Client, target: pg.Client, spec: MigrationSpec): Promise<SchemaObjectResult[]> {
  const sequences = await readSource(source, async () => {
    const tables = uniqueTables(await listTables(source, spec.objects));
    const selected = new Set(tables.map((t) => t.oid));
    const schemas = new Set(selectSchemas(spec, (await userSchemas(source)).map((s) => s.name), tables));
    const rows = (await sequenceRows(source)).filter((s) =>
      s.owner_deptype === 'i' ? selected.has(s.owner_oid!) : schemas.has(s.schema) || (s.owner_oid !== null && selected.has(s.owner_oid)),
    );
    if (rows.length === 0) return [];
    const { rows: values } = await source.query<{ i: number; last_value: string; is_called: boolean }>(
      rows.map((s, i) => `SELECT ${i} AS i, last_value::text AS last_value, is_called FROM ${s.identity}`).join('\nUNION ALL '),
    );
    return values.map((v) => ({ identity: rows[v.i]!.identity, lastValue: v.last_value, isCalled: v.is_called }));
  });

  const { rows } = await target.query<{ identity: string }>(
    `SELECT format('%I.%I', n.nspname, c.relname) AS identity FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relkind = 'S'`,
  );
  const onTarget = new Set(rows.map((r) => r.identity));
  const results: SchemaObjectResult[] = [];
  for (const s of sequences) {
    if (!onTarget.has(s.identity)) {
      results.push({ kind: 'sequence value', identity: s.identity, status: 'skipped', detail: 'the sequence is not on the target' });
      continue;
    }
    try {
      await target.query('SELECT setval($1::regclass, $2::bigint, $3)', [s.identity, s.lastValue, s.isCalled]);
    } catch (error) {
      throw schemaFailed('set', 'sequence', s.identity, error);
    }
    const detail = `last_value ${s.lastValue}${s.isCalled ? '' : ' (not called yet: nextval returns it)'}`;
    results.push({ kind: 'sequence value', identity: s.identity, status: 'replaced', detail });
  }
  return results;
}

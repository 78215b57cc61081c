/**
 * The drill's own proof that the target equals the source, independent of pgferry's code: per
 * table, every row as text on both sides, compared by primary key (missing, extra, different)
 * or, for a table without one, as multisets (a row present fewer or more times); plus counts
 * and a sha256 of the sorted row texts.
 */
import { createHash } from 'node:crypto';
import type pg from 'pg';
import type { LocalCluster } from '../cluster.js';
import { DRILL_DATABASE } from './setup.js';

/** Both sides print values alike (the same as test/support/equality.ts). */
const SETTINGS =
  "SET extra_float_digits = 3; SET DateStyle = 'ISO, YMD'; SET IntervalStyle = 'postgres'; SET TimeZone = 'UTC'; SET bytea_output = 'hex'";

export interface TableComparison {
  table: string;
  sourceRows: number;
  targetRows: number;
  /** Rows of the source missing on the target (by key, or by multiplicity). */
  lost: number;
  /** Rows on the target the source does not have (by key), or has fewer times (no key). */
  duplicated: number;
  /** Keyed rows present on both sides with other values. */
  different: number;
  sameHash: boolean;
}

/** The source's user tables (`schema.table`) with their primary key columns (none: compared as multisets). */
async function userTables(client: pg.Client): Promise<{ table: string; key: string[] }[]> {
  const { rows } = await client.query<{ table: string; key: string[] | null }>(
    `SELECT format('%I.%I', n.nspname, c.relname) AS table,
            (SELECT array_agg(format('%I', a.attname) ORDER BY k.ord)
               FROM pg_index i, unnest(i.indkey) WITH ORDINALITY k(attnum, ord), pg_attribute a
              WHERE i.indrelid = c.oid AND i.indisprimary AND a.attrelid = c.oid AND a.attnum = k.attnum) AS key
       FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
      WHERE c.relkind = 'r' AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_%' AND n.nspname NOT LIKE 'pgferry%'
      ORDER BY 1`,
  );
  return rows.map((row) => ({ table: row.table, key: row.key ?? [] }));
}

/** Row text per key (the whole row's text when there is no key), as a multiset: text → count. */
async function rowsOf(client: pg.Client, table: string, key: string[]): Promise<Map<string, { row: string; count: number }>> {
  const keyText = key.length ? `ROW(${key.map((k) => `t.${k}`).join(', ')})::text` : 't::text';
  const { rows } = await client.query<{ k: string; r: string }>(`SELECT ${keyText} AS k, t::text AS r FROM ONLY ${table} t`);
  const result = new Map<string, { row: string; count: number }>();
  for (const { k, r } of rows) {
    const entry = result.get(k);
    if (entry) entry.count++;
    else result.set(k, { row: r, count: 1 });
  }
  return result;
}

function sortedHash(rows: Map<string, { row: string; count: number }>): string {
  const texts = [...rows.values()].flatMap(({ row, count }) => Array<string>(count).fill(row));
  texts.sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  return createHash('sha256').update(texts.join('\n')).digest('hex');
}

function compareRows(table: string, source: Map<string, { row: string; count: number }>, target: Map<string, { row: string; count: number }>): TableComparison {
  const total = (rows: typeof source) => [...rows.values()].reduce((sum, { count }) => sum + count, 0);
  let lost = 0;
  let duplicated = 0;
  let different = 0;
  for (const [key, { row, count }] of source) {
    const other = target.get(key);
    lost += Math.max(0, count - (other?.count ?? 0));
    if (other && other.row !== row) different++;
  }
  for (const [key, { count }] of target) duplicated += Math.max(0, count - (source.get(key)?.count ?? 0));
  return { table, sourceRows: total(source), targetRows: total(target), lost, duplicated, different, sameHash: sortedHash(source) === sortedHash(target) };
}

/** Every user table of the source compared with the target's table of the same name. */
export async function compareDatabases(source: LocalCluster, target: LocalCluster): Promise<TableComparison[]> {
  const [sourceClient, targetClient] = await Promise.all([source.connect(DRILL_DATABASE), target.connect(DRILL_DATABASE)]);
  try {
    await Promise.all([sourceClient.query(SETTINGS), targetClient.query(SETTINGS)]);
    const results: TableComparison[] = [];
    for (const { table, key } of await userTables(sourceClient)) {
      const sourceRows = await rowsOf(sourceClient, table, key);
      const targetRows = await rowsOf(targetClient, table, key).catch(() => new Map<string, { row: string; count: number }>());
      results.push(compareRows(table, sourceRows, targetRows));
    }
    return results;
  } finally {
    await Promise.all([sourceClient.end(), targetClient.end()]);
  }
}

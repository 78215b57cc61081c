/**
 * The tests' own proof that a target equals its source, independent of pgferry's code:
 * every table's rows as COPY text, sorted and hashed on each side, plus the schema as the
 * catalog describes it (columns, constraints, indexes, triggers, views, sequences, types).
 */
import { createHash } from 'node:crypto';
import type pg from 'pg';
import { to as copyTo } from 'pg-copy-streams';
import type { LocalCluster } from '../../local/dev/cluster.js';
import { withClient } from './clusters.js';

const SETTINGS =
  "SET extra_float_digits = 3; SET DateStyle = 'ISO, YMD'; SET IntervalStyle = 'postgres'; SET TimeZone = 'UTC'; SET bytea_output = 'hex'";
const USER_SCHEMAS = "n.nspname NOT IN ('pg_catalog', 'information_schema', 'pgferry', 'pgferry_capture') AND n.nspname NOT LIKE 'pg_toast%' AND n.nspname NOT LIKE 'pg_temp%'";
const ident = (name: string) => `"${name.replace(/"/g, '""')}"`;

async function hashOf(client: pg.Client, sql: string): Promise<{ hash: string; bytes: number }> {
  const hash = createHash('sha256');
  let bytes = 0;
  const stream = client.query(copyTo(sql));
  for await (const chunk of stream) {
    hash.update(chunk as Buffer);
    bytes += (chunk as Buffer).length;
  }
  return { hash: hash.digest('hex'), bytes };
}

/** Per table (`schema.table`): sha256 of its rows as COPY text, sorted byte-wise, with the row count. */
export async function tableHashes(client: pg.Client): Promise<Record<string, string>> {
  await client.query(SETTINGS);
  const { rows } = await client.query<{ schema: string; name: string }>(
    `SELECT n.nspname AS schema, c.relname AS name FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
      WHERE c.relkind = 'r' AND ${USER_SCHEMAS} ORDER BY 1, 2`,
  );
  const result: Record<string, string> = {};
  for (const { schema, name } of rows) {
    const table = `${ident(schema)}.${ident(name)}`;
    const { rows: count } = await client.query(`SELECT count(*)::int AS n FROM ONLY ${table}`);
    // The alias must not be a column name too (all_types has a column "t"): then it sorts by that column, leaving ties unordered.
    const { hash } = await hashOf(client, `COPY (SELECT whole_row.* FROM ONLY ${table} whole_row ORDER BY whole_row::text COLLATE "C") TO STDOUT`);
    result[`${schema}.${name}`] = `${count[0].n} rows ${hash}`;
  }
  return result;
}

/** tableHashes of one of the cluster's databases (default: its own), on a client of its own. */
export function databaseHashes(cluster: LocalCluster, database?: string): Promise<Record<string, string>> {
  return withClient(cluster, database, tableHashes);
}

async function rowsOf(client: pg.Client, sql: string): Promise<string[]> {
  const { rows } = await client.query(sql);
  return rows.map((row) => Object.values(row).map((v) => (v === null ? '∅' : String(v))).join(' | '));
}

/** The schema of the user's objects as the catalog describes it, comparable across major versions. */
export async function schemaFingerprint(client: pg.Client): Promise<Record<string, string[]>> {
  return {
    // PostgreSQL 17 gives partitions their parent's identity column; older servers keep it on the parent only.
    columns: await rowsOf(
      client,
      `SELECT n.nspname, c.relname, c.relkind, a.attnum, a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull,
              pg_get_expr(d.adbin, d.adrelid), CASE WHEN c.relispartition THEN '' ELSE a.attidentity END, a.attgenerated, co.collname
         FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace
         LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
         LEFT JOIN pg_collation co ON co.oid = a.attcollation AND a.attcollation <> (SELECT oid FROM pg_collation WHERE collname = 'default')
        WHERE a.attnum > 0 AND NOT a.attisdropped AND c.relkind IN ('r', 'p', 'v', 'm') AND ${USER_SCHEMAS}
        ORDER BY 1, 2, 4`,
    ),
    constraints: await rowsOf(
      client,
      `SELECT n.nspname, c.relname, k.conname, k.contype, pg_get_constraintdef(k.oid), k.convalidated
         FROM pg_constraint k JOIN pg_class c ON c.oid = k.conrelid JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE ${USER_SCHEMAS} AND k.contype <> 'n' ORDER BY 1, 2, 3`,
    ),
    indexes: await rowsOf(
      client,
      `SELECT schemaname, tablename, indexname, indexdef FROM pg_indexes
        WHERE schemaname NOT IN ('pg_catalog', 'information_schema', 'pgferry', 'pgferry_capture') ORDER BY 1, 2, 3`,
    ),
    triggers: await rowsOf(
      client,
      `SELECT n.nspname, c.relname, t.tgname, pg_get_triggerdef(t.oid), t.tgenabled
         FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE NOT t.tgisinternal AND ${USER_SCHEMAS} ORDER BY 1, 2, 3`,
    ),
    views: await rowsOf(
      client,
      `SELECT n.nspname, c.relname, c.relkind, pg_get_viewdef(c.oid) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE c.relkind IN ('v', 'm') AND ${USER_SCHEMAS} ORDER BY 1, 2`,
    ),
    sequences: await rowsOf(
      client,
      `SELECT schemaname, sequencename, data_type, start_value, min_value, max_value, increment_by, cycle, cache_size, last_value
         FROM pg_sequences WHERE schemaname NOT IN ('pgferry', 'pgferry_capture') ORDER BY 1, 2`,
    ),
    types: await rowsOf(
      client,
      `SELECT n.nspname, t.typname, string_agg(e.enumlabel, ',' ORDER BY e.enumsortorder)
         FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace JOIN pg_enum e ON e.enumtypid = t.oid
        WHERE ${USER_SCHEMAS} GROUP BY 1, 2 ORDER BY 1, 2`,
    ),
    partitions: await rowsOf(
      client,
      `SELECT n.nspname, c.relname, pg_get_expr(c.relpartbound, c.oid) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE c.relispartition AND ${USER_SCHEMAS} ORDER BY 1, 2`,
    ),
    functions: await rowsOf(
      client,
      `SELECT n.nspname, p.proname, pg_get_function_identity_arguments(p.oid), md5(pg_get_functiondef(p.oid))
         FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace WHERE p.prokind IN ('f', 'p') AND ${USER_SCHEMAS} ORDER BY 1, 2, 3`,
    ),
  };
}

/**
 * What changed since a table was verified (issue 14, "the fenced window depends on the changes,
 * not the size"): `pgferry.changed_keys` (the keys the applier changed, with the commit LSN of
 * the last change), `pgferry.changed_tables` (each table's key columns, and the last change
 * that had no usable key: REPLICA IDENTITY FULL or none, TRUNCATE) and `pgferry.verified_tables`
 * (the LSN from which the comparison while replicating verified a table, and whether it
 * matched). A change is covered by a verification at LSN V when its commit LSN is below V: it
 * was committed on the target before V was read, so the comparison saw it.
 */
import type pg from 'pg';
import type { TableRef } from '../catalog/tables.js';
import { qualified } from '../sql.js';

/** What one chunk of the applier changed, all tables together (keys deduplicated per table). */
export interface ChangesBatch {
  /** Tables whose key columns this applier has not recorded yet, or changed as a whole (at `wholeLsn`). */
  tables: { table: TableRef; keyColumns: string[] | null; wholeLsn: string | null }[];
  /** Changed keys: the table, the key values in key column order, and the commit LSN of the key's last change. */
  keys: { table: TableRef; key: (string | null)[]; lsn: string }[];
  /** The commit LSN of the chunk's last change. */
  lastLsn: string;
}

/** A text[] value in PostgreSQL's array input form: every element quoted, NULL bare. */
export function textArrayLiteral(values: (string | null)[]): string {
  return `{${values.map((v) => (v === null ? 'NULL' : `"${v.replace(/[\\"]/g, '\\$&')}"`)).join(',')}}`;
}

// Keys recorded in other columns than a table's current key cannot be looked up any more: such a
// table is marked changed as a whole. Keys travel as array literals, side by side with their
// tables and LSNs, so one statement records a whole chunk.
const CHANGES_SQL = `
WITH tables AS (
  INSERT INTO pgferry.changed_tables AS c (migration, source_schema, source_table, key_columns, whole_lsn)
  SELECT $1, s, t, kc::text[], w FROM unnest($2::text[], $3::text[], $4::text[], $5::pg_lsn[]) u(s, t, kc, w)
  ON CONFLICT (migration, source_schema, source_table) DO UPDATE
     SET key_columns = coalesce(EXCLUDED.key_columns, c.key_columns),
         whole_lsn = greatest(c.whole_lsn, EXCLUDED.whole_lsn,
                              CASE WHEN c.key_columns <> EXCLUDED.key_columns THEN $10::pg_lsn END)
)
INSERT INTO pgferry.changed_keys AS k (migration, source_schema, source_table, key, lsn)
SELECT $1, s, t, key::text[], l FROM unnest($6::text[], $7::text[], $8::text[], $9::pg_lsn[]) u(s, t, key, l)
ON CONFLICT (migration, source_schema, source_table, key) DO UPDATE SET lsn = greatest(k.lsn, EXCLUDED.lsn)`;

/** Records a chunk's changes inside the caller's open transaction (the applier's, with its checkpoint): one statement. */
export async function recordChanges(client: pg.ClientBase, migration: string, batch: ChangesBatch): Promise<void> {
  if (batch.tables.length === 0 && batch.keys.length === 0) return;
  const { tables, keys } = batch;
  await client.query(CHANGES_SQL, [
    migration,
    tables.map((t) => t.table.schema),
    tables.map((t) => t.table.name),
    tables.map((t) => (t.keyColumns ? textArrayLiteral(t.keyColumns) : null)),
    tables.map((t) => t.wholeLsn),
    keys.map((k) => k.table.schema),
    keys.map((k) => k.table.name),
    keys.map((k) => textArrayLiteral(k.key)),
    keys.map((k) => k.lsn),
    batch.lastLsn,
  ]);
}

/** A table's changes still to be checked and its verification, by `schema.table`. */
export interface TableChanges {
  /** The columns the recorded keys are in (the source's replica identity). */
  keyColumns: string[] | null;
  /** Keys recorded (not yet covered by a verification). */
  keys: number;
  /** The last change without a usable key not yet covered, or null. */
  wholeLsn: string | null;
}

export interface TableVerification {
  lsn: string;
  matched: boolean;
}

export async function readTableChanges(client: pg.ClientBase, migration: string): Promise<Map<string, TableChanges>> {
  const { rows } = await client.query<{ source_schema: string; source_table: string; key_columns: string[] | null; keys: string; whole_lsn: string | null }>(
    `SELECT t.source_schema, t.source_table, c.key_columns, coalesce(k.keys, 0) AS keys, c.whole_lsn::text
       FROM (SELECT source_schema, source_table FROM pgferry.changed_tables WHERE migration = $1
             UNION SELECT DISTINCT source_schema, source_table FROM pgferry.changed_keys WHERE migration = $1) t
       LEFT JOIN pgferry.changed_tables c ON c.migration = $1 AND (c.source_schema, c.source_table) = (t.source_schema, t.source_table)
       LEFT JOIN (SELECT source_schema, source_table, count(*) AS keys FROM pgferry.changed_keys WHERE migration = $1
                   GROUP BY 1, 2) k ON (k.source_schema, k.source_table) = (t.source_schema, t.source_table)`,
    [migration],
  );
  return new Map(
    rows.map((r) => [
      qualified({ schema: r.source_schema, name: r.source_table }),
      { keyColumns: r.key_columns, keys: Number(r.keys), wholeLsn: r.whole_lsn },
    ]),
  );
}

/** Each table's last change without a usable key (`whole_lsn`), by `schema.table`: readTableChanges without counting the keys. */
export async function readWholeChanges(client: pg.ClientBase, migration: string): Promise<Map<string, string>> {
  const { rows } = await client.query<{ source_schema: string; source_table: string; whole_lsn: string }>(
    'SELECT source_schema, source_table, whole_lsn::text FROM pgferry.changed_tables WHERE migration = $1 AND whole_lsn IS NOT NULL',
    [migration],
  );
  return new Map(rows.map((r) => [qualified({ schema: r.source_schema, name: r.source_table }), r.whole_lsn]));
}

export async function readVerifications(client: pg.ClientBase, migration: string): Promise<Map<string, TableVerification>> {
  const { rows } = await client.query<{ source_schema: string; source_table: string; lsn: string; matched: boolean }>(
    'SELECT source_schema, source_table, verified_lsn::text AS lsn, matched FROM pgferry.verified_tables WHERE migration = $1',
    [migration],
  );
  return new Map(rows.map((r) => [qualified({ schema: r.source_schema, name: r.source_table }), { lsn: r.lsn, matched: r.matched }]));
}

/** The keys recorded for a table (key values in key column order), in order. */
export async function readChangedKeys(client: pg.ClientBase, migration: string, table: TableRef): Promise<(string | null)[][]> {
  const { rows } = await client.query<{ key: (string | null)[] }>(
    'SELECT key FROM pgferry.changed_keys WHERE migration = $1 AND source_schema = $2 AND source_table = $3 ORDER BY key',
    [migration, table.schema, table.name],
  );
  return rows.map((r) => r.key);
}

/** What the applier recorded for one table, split at an LSN (read in a comparison's snapshot of the target). */
export interface ChangesAt {
  /** The columns the keys are in; null when none were recorded. */
  keyColumns: string[] | null;
  /** A change without a usable key at or after the LSN. */
  wholeSince: boolean;
  /** Keys whose last change is at or after the LSN. */
  since: (string | null)[][];
  /** Keys whose last change is before it (only when asked for). */
  before: (string | null)[][];
}

export async function readChangesAt(client: pg.ClientBase, migration: string, table: TableRef, lsn: string, { before }: { before: boolean }): Promise<ChangesAt> {
  const params = [migration, table.schema, table.name, lsn];
  const { rows: tables } = await client.query<{ key_columns: string[] | null; whole: boolean | null }>(
    `SELECT key_columns, whole_lsn >= $4::pg_lsn AS whole FROM pgferry.changed_tables
      WHERE migration = $1 AND source_schema = $2 AND source_table = $3`,
    params,
  );
  const { rows: keys } = await client.query<{ key: (string | null)[]; since: boolean }>(
    `SELECT key, lsn >= $4::pg_lsn AS since FROM pgferry.changed_keys
      WHERE migration = $1 AND source_schema = $2 AND source_table = $3 AND ($5 OR lsn >= $4::pg_lsn)
      ORDER BY key`,
    [...params, before],
  );
  return {
    keyColumns: tables[0]?.key_columns ?? null,
    wholeSince: tables[0]?.whole === true,
    since: keys.filter((k) => k.since).map((k) => k.key),
    before: keys.filter((k) => !k.since).map((k) => k.key),
  };
}

/** Keys recorded and not yet covered by a verification, all tables of the migration together. */
export async function countChangedKeys(client: pg.ClientBase, migration: string): Promise<number> {
  const { rows } = await client.query<{ n: string }>('SELECT count(*) AS n FROM pgferry.changed_keys WHERE migration = $1', [migration]);
  return Number(rows[0]!.n);
}

/**
 * Reclaims the rows a pass's verifications deleted and the versions the applier's upserts left,
 * so the next pass and the comparison behind the fence read the keys left, not their dead
 * predecessors (a pass deletes hundreds of thousands; autovacuum comes minutes later). Run
 * outside a transaction; a user who does not own the table gets a warning and nothing happens.
 */
export async function vacuumChangedKeys(client: pg.ClientBase): Promise<void> {
  await client.query('VACUUM pgferry.changed_keys');
}

/**
 * Records that `table` was verified from `lsn` (the target's applied LSN read before it was
 * compared). When it matched, the changes below `lsn` are covered and forgotten; rows the
 * applier holds locked right now are left (they are being changed again, so they stay due).
 */
export async function recordVerification(client: pg.ClientBase, migration: string, table: TableRef, lsn: string, matched: boolean): Promise<void> {
  const params = [migration, table.schema, table.name, lsn];
  await client.query(
    `INSERT INTO pgferry.verified_tables AS v (migration, source_schema, source_table, verified_lsn, matched) VALUES ($1, $2, $3, $4::pg_lsn, $5)
     ON CONFLICT (migration, source_schema, source_table) DO UPDATE
        SET verified_lsn = EXCLUDED.verified_lsn, matched = EXCLUDED.matched, verified_at = now()`,
    [...params, matched],
  );
  if (!matched) return;
  await client.query(
    `DELETE FROM pgferry.changed_keys WHERE ctid IN (
       SELECT ctid FROM pgferry.changed_keys
        WHERE migration = $1 AND source_schema = $2 AND source_table = $3 AND lsn < $4::pg_lsn FOR UPDATE SKIP LOCKED)`,
    params,
  );
  await client.query(
    `UPDATE pgferry.changed_tables SET whole_lsn = NULL WHERE ctid IN (
       SELECT ctid FROM pgferry.changed_tables
        WHERE migration = $1 AND source_schema = $2 AND source_table = $3 AND whole_lsn < $4::pg_lsn FOR UPDATE SKIP LOCKED)`,
    params,
  );
}

/** `table` was written outside the stream (copied anew): it is compared in full again. */
export async function forgetVerification(client: pg.ClientBase, migration: string, table: TableRef): Promise<void> {
  await client.query('DELETE FROM pgferry.verified_tables WHERE migration = $1 AND source_schema = $2 AND source_table = $3', [
    migration,
    table.schema,
    table.name,
  ]);
}

/** The incremental comparison at the cutover request has run (once per request: replicationDecision), taking `seconds`. */
export async function recordIncrementalComparison(client: pg.ClientBase, migration: string, seconds: number): Promise<void> {
  await client.query('UPDATE pgferry.replication_status SET incremental_compared_at = clock_timestamp(), incremental_compare_seconds = $2 WHERE migration = $1', [
    migration,
    seconds,
  ]);
}

/** Forgets every recorded change and verification of a migration (its replication starts over). */
export async function clearChangeTracking(client: pg.ClientBase, migration: string): Promise<void> {
  await client.query('DELETE FROM pgferry.changed_keys WHERE migration = $1', [migration]);
  await client.query('DELETE FROM pgferry.changed_tables WHERE migration = $1', [migration]);
  await client.query('DELETE FROM pgferry.verified_tables WHERE migration = $1', [migration]);
}

/**
 * Set-wise apply of one table's part of a chunk, inside its savepoint. Each function returns
 * false when an affected-row count shows a conflict (or the chunk cannot be collapsed exactly);
 * unique/exclusion violations are thrown as they are. Either way the caller rolls back to the
 * savepoint and applies the part row by row (chunk.ts).
 *
 * - Only inserts: COPY (text format, the exact text the source sent).
 * - Tables with a key: DELETE … USING unnest(), UPDATE … FROM unnest() per set of known
 *   columns, and COPY of new rows (or INSERT … SELECT … WHERE NOT EXISTS without a unique index
 *   on the key); the array elements are the source's text, parsed by each column type's own
 *   input function.
 * - REPLICA IDENTITY FULL: rows to remove are matched on all old values (statements.ts's
 *   fullRowMatch): equality on columns whose type has a btree opclass (per NULL pattern, so
 *   indexes and hash joins work) plus `ROW(…)::text` equality, which is exact (NULL vs '', -0
 *   vs 0) and works for types without equality (json, point, xml); row_number() per distinct
 *   old row removes exactly as many duplicates as the source deleted. New rows go in by COPY.
 */
import { collapseKeyed, planKeyed, planMultiset, type KeyEntry } from './collapse.js';
import type { Change, Relation } from './relation.js';
import type { TargetSession } from './session.js';
import { fullRowMatch, unnest } from './statements.js';
import type { TargetTable } from './target-table.js';
import { Params } from './values.js';

/** Only new rows: straight to COPY. An existing (or repeated) key raises unique_violation. */
export async function copyInserts(session: TargetSession, rel: Relation, table: TargetTable, changes: Change[]): Promise<true> {
  await session.copyIn(rel.display, table, table.writable, changes.map((c) => c.new!));
  return true;
}

export async function setWiseKeyed(session: TargetSession, rel: Relation, table: TargetTable, changes: Change[]): Promise<boolean> {
  const entries = collapseKeyed(rel, changes);
  if (!entries) return false;
  const { deletes, inserts, updates } = planKeyed(rel, entries.values(), table.writable, table.alwaysIdentity);
  const keyData = (list: KeyEntry[]) => rel.key.map((_, j) => list.map((e) => e.key[j]!));
  const keyCond = (expr: (i: number) => string) => rel.key.map((k) => `t.${table.columns[k]!.quoted} = ${expr(k)}`).join(' AND ');
  const run = (sql: string, params: Params) => session.run(sql, params.values, rel.display, { setWise: true });

  if (deletes.length > 0) {
    const params = new Params();
    const u = unnest(table, rel.key, keyData(deletes), params);
    const result = await run(`DELETE FROM ${table.only}${table.quoted} AS t USING ${u.from} WHERE ${keyCond(u.expr)}`, params);
    if (result.rowCount !== deletes.length) return false;
  }
  for (const { cols, entries: group } of updates) {
    const params = new Params();
    const all = [...rel.key, ...cols];
    const data = [...keyData(group), ...cols.map((i) => group.map((e) => e.values![i] as string | null))];
    const u = unnest(table, all, data, params);
    if (cols.length === 0) {
      // Nothing known to change: only prove the rows exist.
      const result = await run(`SELECT count(*)::int8::text AS n FROM ${table.only}${table.quoted} AS t JOIN ${u.from} ON ${keyCond(u.expr)}`, params);
      if (Number(result.rows[0].n) !== group.length) return false;
      continue;
    }
    const set = cols.map((i) => `${table.columns[i]!.quoted} = ${u.expr(i)}`).join(', ');
    const result = await run(`UPDATE ${table.only}${table.quoted} AS t SET ${set} FROM ${u.from} WHERE ${keyCond(u.expr)}`, params);
    if (result.rowCount !== group.length) return false;
  }
  if (inserts.length > 0) {
    const cols = table.writable;
    if (table.uniqueKey) {
      // The key's unique index turns an existing key into unique_violation: the conflict check comes free.
      await session.copyIn(rel.display, table, cols, inserts.map((e) => e.values!));
    } else {
      const params = new Params();
      const u = unnest(table, cols, cols.map((i) => inserts.map((e) => e.values![i] as string | null)), params);
      const names = cols.map((i) => table.columns[i]!.quoted).join(', ');
      const sql = `INSERT INTO ${table.quoted} AS t (${names}) ${table.overriding}SELECT ${cols.map((i) => u.expr(i)).join(', ')} FROM ${u.from}
                    WHERE NOT EXISTS (SELECT 1 FROM ${table.only}${table.quoted} AS t WHERE ${keyCond(u.expr)})`;
      const result = await run(sql, params);
      if (result.rowCount !== inserts.length) return false;
    }
  }
  return true;
}

export async function setWiseMultiset(session: TargetSession, rel: Relation, table: TargetTable, changes: Change[]): Promise<boolean> {
  const cols = table.writable;
  const { removals, additions } = planMultiset(changes, cols);
  for (const { nulls, rows, counts } of removals) {
    const params = new Params();
    const present = cols.filter((i) => !nulls.has(i));
    const u = unnest(table, present, present.map((i) => rows.map((r) => r[i] as string)), params, [{ name: 'n', values: counts }], true);
    const matches = `SELECT s.tableoid AS rel, s.ctid AS tid, u.n, row_number() OVER (PARTITION BY u.ord) AS rn
                       FROM ${table.only}${table.quoted} AS s JOIN ${u.from} ON ${fullRowMatch(table, (i) => nulls.has(i), u.expr)}`;
    const sql = table.partitioned
      ? `DELETE FROM ${table.quoted} AS t WHERE (t.tableoid, t.ctid) IN (SELECT m.rel, m.tid FROM (${matches}) m WHERE m.rn <= m.n)`
      : `DELETE FROM ONLY ${table.quoted} AS t WHERE t.ctid = ANY (ARRAY(SELECT m.tid FROM (${matches}) m WHERE m.rn <= m.n))`;
    const result = await session.run(sql, params.values, rel.display, { setWise: true });
    if (result.rowCount !== counts.reduce((sum, c) => sum + Number(c), 0)) return false;
  }
  if (additions.length > 0) await session.copyIn(rel.display, table, cols, additions);
  return true;
}

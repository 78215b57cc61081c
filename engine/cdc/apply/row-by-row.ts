/**
 * Row-by-row apply: one change at a time, in exact source order, with single-row parameterized
 * statements (prepared). The reference semantics the set-wise path falls back to, and the only
 * path that meets conflicts, which it hands to the ConflictResolver.
 */
import type { ConflictResolver } from './conflict.js';
import { ApplyError } from './errors.js';
import { describeValues, keyValues, type Change, type Relation } from './relation.js';
import type { TargetSession } from './session.js';
import { fullRowMatch } from './statements.js';
import type { TargetTable } from './target-table.js';
import { fill, hasToast, identity, TOAST, type Row } from './values.js';

export interface RowContext {
  session: TargetSession;
  rel: Relation;
  table: TargetTable;
  conflicts: ConflictResolver;
}

/** Writes of single rows of a table with a key. */
class KeyedRows {
  constructor(private readonly ctx: RowContext) {}

  private col = (i: number) => this.ctx.table.columns[i]!;

  private exec(text: string, values: (string | null)[]): Promise<number> {
    return this.ctx.session.exec(this.ctx.rel.display, text, values);
  }

  /** Non-key columns an upsert may set. */
  private upsertSet(cols: number[]): number[] {
    const { rel, table } = this.ctx;
    return cols.filter((i) => !rel.key.includes(i) && !table.alwaysIdentity.has(i));
  }

  /** The key columns equal to the parameters after the first `offset` ones, in key order. */
  keyCond(offset: number): string {
    return this.ctx.rel.key.map((k, j) => `t.${this.col(k).quoted} = $${offset + j + 1}::${this.col(k).type}`).join(' AND ');
  }

  async insert(row: Row, onConflict: 'nothing' | 'update'): Promise<number> {
    const { rel, table } = this.ctx;
    const col = this.col;
    const cols = table.writable;
    const values = cols.map((i) => row[i] as string | null);
    const exprs = cols.map((i, j) => `$${j + 1}::${col(i).type}`);
    const names = cols.map((i) => col(i).quoted).join(', ');
    if (table.uniqueKey) {
      const keyNames = rel.key.map((k) => col(k).quoted).join(', ');
      const update = this.upsertSet(cols);
      const action =
        onConflict === 'update' && update.length > 0 ? `DO UPDATE SET ${update.map((i) => `${col(i).quoted} = EXCLUDED.${col(i).quoted}`).join(', ')}` : 'DO NOTHING';
      return this.exec(`INSERT INTO ${table.quoted} AS t (${names}) ${table.overriding}VALUES (${exprs.join(', ')}) ON CONFLICT (${keyNames}) ${action}`, values);
    }
    const cond = rel.key.map((k) => `t.${col(k).quoted} = $${cols.indexOf(k) + 1}::${col(k).type}`).join(' AND ');
    if (onConflict === 'update') {
      const update = this.upsertSet(cols);
      if (update.length > 0) {
        const set = update.map((i) => `${col(i).quoted} = $${cols.indexOf(i) + 1}::${col(i).type}`).join(', ');
        const n = await this.exec(`UPDATE ${table.only}${table.quoted} AS t SET ${set} WHERE ${cond}`, values);
        if (n > 0) return n;
      }
    }
    return this.exec(
      `INSERT INTO ${table.quoted} AS t (${names}) ${table.overriding}SELECT ${exprs.join(', ')} WHERE NOT EXISTS (SELECT 1 FROM ${table.only}${table.quoted} AS t WHERE ${cond})`,
      values,
    );
  }

  /** Sets the known (not unchanged-TOAST) columns of the row with `key`; the key columns too with `includeKey`. */
  async update(key: (string | null)[], row: Row, includeKey: boolean): Promise<number> {
    const { rel, table } = this.ctx;
    const cols = table.writable.filter((i) => row[i] !== TOAST && (includeKey || !rel.key.includes(i)) && !table.alwaysIdentity.has(i));
    const values: (string | null)[] = cols.map((i) => row[i] as string | null);
    const cond = this.keyCond(values.length);
    if (cols.length === 0) return this.exec(`SELECT 1 FROM ${table.only}${table.quoted} AS t WHERE ${cond}`, key); // nothing to change: does it exist?
    const set = cols.map((i, j) => `${this.col(i).quoted} = $${j + 1}::${this.col(i).type}`).join(', ');
    return this.exec(`UPDATE ${table.only}${table.quoted} AS t SET ${set} WHERE ${cond}`, [...values, ...key]);
  }

  delete(key: (string | null)[]): Promise<number> {
    const { table } = this.ctx;
    return this.exec(`DELETE FROM ${table.only}${table.quoted} AS t WHERE ${this.keyCond(0)}`, key);
  }
}

/** One change of a table with a key. */
export async function applyKeyedRow(ctx: RowContext, ch: Change): Promise<void> {
  const { rel, table, conflicts } = ctx;
  const rows = new KeyedRows(ctx);
  const conflict = (operation: 'INSERT' | 'UPDATE' | 'DELETE', key: (string | null)[]) => ({
    table: rel.display,
    operation,
    key: describeValues(rel, rel.key, key),
    commitLsn: ch.lsn,
  });
  if (ch.op === 'I') {
    if ((await rows.insert(ch.new!, 'nothing')) > 0) return;
    const key = keyValues(rel, ch.new!);
    await conflicts.resolve(conflict('INSERT', key), () => rows.update(key, ch.new!, false));
  } else if (ch.op === 'U') {
    const newKey = keyValues(rel, ch.new!, ch.old);
    const oldKey = ch.old ? keyValues(rel, ch.old) : newKey;
    const keyChanged = identity(oldKey) !== identity(newKey);
    if (keyChanged && rel.key.some((k) => table.alwaysIdentity.has(k))) {
      // An UPDATE cannot set a GENERATED ALWAYS column (the source did SET … = DEFAULT): move the row instead.
      if (hasToast(ch.new!)) {
        throw new ApplyError(
          `Cannot apply an UPDATE of ${rel.display} that changes the GENERATED ALWAYS identity key ${describeValues(rel, rel.key, oldKey)} while leaving a TOASTed value unchanged: make the target column GENERATED BY DEFAULT.`,
        );
      }
      if ((await rows.delete(oldKey)) > 0) {
        if ((await rows.insert(ch.new!, 'nothing')) > 0) return;
        throw new ApplyError(`Cannot apply an UPDATE of ${rel.display}: its new key ${describeValues(rel, rel.key, newKey)} already exists on the target.`);
      }
    } else if ((await rows.update(oldKey, ch.new!, keyChanged)) > 0) return;
    // With unchanged TOAST values the row is not fully known: those values exist only in the missing row.
    await conflicts.resolve(conflict('UPDATE', oldKey), hasToast(ch.new!) ? 'unknown' : () => rows.insert(ch.new!, 'update'));
  } else {
    const key = keyValues(rel, ch.old!);
    if ((await rows.delete(key)) > 0) return;
    await conflicts.resolve(conflict('DELETE', key), 'matches');
  }
}

/** `<locator of one target row equal to old>`: SQL selecting one matching row's ctid, and its parameters. */
function matchOne(table: TargetTable, old: Row, firstParam: number): { where: string; values: string[] } {
  const values: string[] = [];
  const exprs = new Map<number, string>();
  for (const i of table.writable) {
    if (old[i] === null) continue;
    values.push(old[i] as string);
    exprs.set(i, `$${firstParam + values.length - 1}::${table.columns[i]!.type}`);
  }
  const one = `SELECT s.tableoid, s.ctid FROM ${table.only}${table.quoted} AS s WHERE ${fullRowMatch(table, (i) => old[i] === null, (i) => exprs.get(i)!)} LIMIT 1`;
  return {
    where: table.partitioned ? `(t.tableoid, t.ctid) = (${one})` : `t.ctid = (SELECT x.ctid FROM (${one}) x)`,
    values,
  };
}

/** One change of a REPLICA IDENTITY FULL table: one row matching all old values is updated or deleted. */
export async function applyMultisetRow(ctx: RowContext, ch: Change): Promise<void> {
  const { session, rel, table, conflicts } = ctx;
  const cols = table.writable;
  const exec = (text: string, values: (string | null)[]) => session.exec(rel.display, text, values);
  const insert = (row: Row) =>
    exec(
      `INSERT INTO ${table.quoted} (${cols.map((i) => table.columns[i]!.quoted).join(', ')}) ${table.overriding}VALUES (${cols
        .map((i, j) => `$${j + 1}::${table.columns[i]!.type}`)
        .join(', ')})`,
      cols.map((i) => row[i] as string | null),
    );
  if (ch.op === 'I') {
    await insert(ch.new!);
    return;
  }
  const old = ch.old!;
  let affected: number;
  if (ch.op === 'D') {
    const match = matchOne(table, old, 1);
    affected = await exec(`DELETE FROM ${table.only}${table.quoted} AS t WHERE ${match.where}`, match.values);
  } else {
    const set = cols.filter((i) => ch.new![i] !== TOAST && !table.alwaysIdentity.has(i));
    const values = set.map((i) => ch.new![i] as string | null);
    const match = matchOne(table, old, values.length + 1);
    affected =
      set.length === 0
        ? await exec(`SELECT 1 FROM ${table.only}${table.quoted} AS t WHERE ${match.where}`, match.values)
        : await exec(
            `UPDATE ${table.only}${table.quoted} AS t SET ${set.map((i, j) => `${table.columns[i]!.quoted} = $${j + 1}::${table.columns[i]!.type}`).join(', ')} WHERE ${match.where}`,
            [...values, ...match.values],
          );
  }
  if (affected > 0) return;
  const conflict = {
    table: rel.display,
    operation: ch.op === 'D' ? ('DELETE' as const) : ('UPDATE' as const),
    key: describeValues(rel, cols, cols.map((i) => old[i] as string | null)),
    commitLsn: ch.lsn,
  };
  await conflicts.resolve(conflict, ch.op === 'U' ? () => insert(fill(ch.new!, old)) : 'matches');
}

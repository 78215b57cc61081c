/**
 * SQL text shared by the set-wise and row-by-row paths: rows as unnest() of bound array
 * parameters, and the match of a target row to a whole row of a REPLICA IDENTITY FULL table.
 * Pure: values only ever become bound parameters.
 */
import type { TargetTable } from './target-table.js';
import { arrayLiteral, type Params } from './values.js';

/** `unnest($1::t1[], …) AS u(c<i>, …)` over per-column value lists, and each column's typed expression. */
export function unnest(
  table: TargetTable,
  cols: number[],
  data: (string | null)[][],
  params: Params,
  extra: { name: string; values: string[] }[] = [],
  ordinality = false,
): { from: string; expr: (i: number) => string } {
  const args = cols.map((i, j) => {
    const c = table.columns[i]!;
    return c.arrayType ? params.add(arrayLiteral(data[j]!, c.delim), c.arrayType) : params.add(arrayLiteral(data[j]!, ','), 'text[]');
  });
  for (const e of extra) args.push(params.add(arrayLiteral(e.values, ','), 'int8[]'));
  const names = [...cols.map((i) => `c${i}`), ...extra.map((e) => e.name), ...(ordinality ? ['ord'] : [])];
  return {
    from: `unnest(${args.join(', ')})${ordinality ? ' WITH ORDINALITY' : ''} AS u(${names.join(', ')})`,
    expr: (i) => {
      const c = table.columns[i]!;
      return c.arrayType ? `u.c${i}` : `u.c${i}::${c.type}`;
    },
  };
}

/**
 * The condition matching target row `s` to one full row (REPLICA IDENTITY FULL) over the
 * writable columns: equality where the type has a btree opclass (`IS NULL` for NULL values),
 * plus exact `ROW(…)::text` equality. `expr(i)` is the typed value of non-NULL column i.
 */
export function fullRowMatch(table: TargetTable, isNull: (i: number) => boolean, expr: (i: number) => string): string {
  const cols = table.writable;
  return [
    ...cols.flatMap((i) => {
      const c = table.columns[i]!;
      if (isNull(i)) return [`s.${c.quoted} IS NULL`];
      if (c.eq === 'plain') return [`s.${c.quoted} = ${expr(i)}`];
      if (c.eq) return [`s.${c.quoted}::${c.eq} = (${expr(i)})::${c.eq}`];
      return [];
    }),
    `ROW(${cols.map((i) => `s.${table.columns[i]!.quoted}`).join(', ')})::text = ROW(${cols
      .map((i) => (isNull(i) ? `NULL::${table.columns[i]!.type}` : expr(i)))
      .join(', ')})::text`,
  ].join(' AND ');
}

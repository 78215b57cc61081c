/**
 * The per-table `where` filter is trusted SQL, but it must stay one expression: it is pasted
 * into queries as `(filter)`, and text that closes that parenthesis, ends the statement or
 * leaves a string or comment open could turn the query into another one. This scans the
 * filter the way PostgreSQL's lexer does (strings, quoted identifiers, dollar quotes, comments,
 * whitespace; standard_conforming_strings on, which the sessions that read with filters set)
 * and refuses such text before any server sees it. It is what keeps a filter from closing the
 * parenthesis and reading more (`true) UNION SELECT …`), which is still one read-only
 * statement; the extended protocol and read-only transactions stop a second statement and
 * writes even if this scan were wrong.
 */

import { tableKey, type TableRef } from '../catalog/tables.js';
import { PgferryError } from '../errors.js';

const WHITESPACE = /[ \t\n\r\f\v]/;
const IDENT_START = /[A-Za-z_\u0080-\uffff]/;
const IDENT_CONT = /[A-Za-z0-9_$\u0080-\uffff]/;
const DOLLAR_TAG = /^\$(?:[A-Za-z_\u0080-\uffff][A-Za-z0-9_\u0080-\uffff]*)?\$/;

const HOW = 'give one boolean expression over the table\'s columns, like "region = \'eu\' AND id > 100"';

/** What makes `where` not a single SQL expression, or undefined when it is one. */
export function whereProblem(where: string): string | undefined {
  let depth = 0;
  let tokens = 0;
  let i = 0;
  const n = where.length;
  // Skips a quoted run opened at `i` (the quote char at `open`), doubling the quote to escape it.
  const quoted = (open: number, quote: string, backslashEscapes: boolean): number | undefined => {
    for (let j = open + 1; j < n; j++) {
      const c = where[j];
      if (backslashEscapes && c === '\\') j++;
      else if (c === quote) {
        if (where[j + 1] === quote) j++;
        else return j + 1;
      }
    }
    return undefined;
  };
  while (i < n) {
    const c = where[i]!;
    const next = where[i + 1];
    // PostgreSQL's whitespace only: other spaces (U+00A0 …) are identifier characters to it.
    if (WHITESPACE.test(c)) {
      i++;
      continue;
    }
    if (c === '-' && next === '-') {
      // A -- comment ends at a carriage return as well as at a line feed.
      let j = i + 2;
      while (j < n && where[j] !== '\n' && where[j] !== '\r') j++;
      i = j;
      continue;
    }
    if (c === '/' && next === '*') {
      let nesting = 1;
      let j = i + 2;
      while (j < n && nesting > 0) {
        if (where[j] === '/' && where[j + 1] === '*') (nesting++, (j += 2));
        else if (where[j] === '*' && where[j + 1] === '/') (nesting--, (j += 2));
        else j++;
      }
      if (nesting > 0) return `a /* comment is not closed: ${HOW}`;
      i = j;
      continue;
    }
    tokens++;
    if (c === ';') return `";" ends a statement: ${HOW}, not statements`;
    if (c === '(') {
      depth++;
      i++;
      continue;
    }
    if (c === ')') {
      if (--depth < 0) return `")" closes a parenthesis the filter did not open: ${HOW}`;
      i++;
      continue;
    }
    if (c === "'" || c === '"') {
      const end = quoted(i, c, false);
      if (end === undefined) return `a ${c === "'" ? 'string' : 'quoted identifier'} is not closed: ${HOW}`;
      i = end;
      continue;
    }
    if (c === '$') {
      const tag = DOLLAR_TAG.exec(where.slice(i))?.[0];
      if (!tag) return `"$" outside a $$-quoted string (parameters like $1 cannot be used): ${HOW}`;
      const end = where.indexOf(tag, i + tag.length);
      if (end < 0) return `a ${tag}-quoted string is not closed: ${HOW}`;
      i = end + tag.length;
      continue;
    }
    if (IDENT_START.test(c)) {
      // E'…' takes backslash escapes; U&'…', B'…', X'…', N'…' do not (U&"…" is an identifier).
      if ((c === 'e' || c === 'E') && next === "'") {
        const end = quoted(i + 1, "'", true);
        if (end === undefined) return `a string is not closed: ${HOW}`;
        i = end;
        continue;
      }
      if ((c === 'u' || c === 'U') && next === '&' && (where[i + 2] === "'" || where[i + 2] === '"')) {
        const end = quoted(i + 2, where[i + 2]!, false);
        if (end === undefined) return `a string is not closed: ${HOW}`;
        i = end;
        continue;
      }
      let j = i + 1;
      while (j < n && IDENT_CONT.test(where[j]!)) j++;
      i = j;
      continue;
    }
    if (/[0-9]/.test(c) || (c === '.' && next !== undefined && /[0-9]/.test(next))) {
      let j = i + 1;
      while (j < n && /[0-9A-Za-z_.]/.test(where[j]!)) j++;
      // Servers before 15 read `1e'…'` as 1 followed by E'…': refuse the ambiguity.
      if (j < n && /['"$]/.test(where[j]!)) return `a number runs into a quote or "$" at "${where.slice(i, j + 1)}": put a space between them`;
      i = j;
      continue;
    }
    i++;
  }
  if (tokens === 0) return `it is empty: ${HOW}`;
  if (depth > 0) return `a "(" is not closed: ${HOW}`;
  return undefined;
}

/**
 * The filter as it goes into a query: in parentheses, with a line break before the closing one
 * so that a trailing `--` comment cannot swallow what follows. Throws when it is not a single
 * expression (the spec refuses that earlier; this keeps every query builder safe on its own).
 */
export function whereCondition(where: string, table: TableRef): string {
  const problem = whereProblem(where);
  if (problem) throw new PgferryError('pgferry.WhereInvalid', `${whereField(table)}: ${problem}.`);
  return `(${where}\n)`;
}

/** The spec field a table's filter comes from, for errors. */
export const whereField = (table: TableRef) => `objects.tables[${JSON.stringify(tableKey(table))}].where`;

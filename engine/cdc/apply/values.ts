/**
 * Value encoding for the applier: the buffered form of a row (the source's text output, NULL,
 * or "unchanged TOAST value, not sent"), identities of key values, and the two ways values
 * reach the target without being parsed in JS or concatenated into SQL: array literals for
 * bound array parameters, and COPY text format. Pure.
 */
import { UNCHANGED_TOAST as TOAST, type TupleValue } from '../pgoutput.js';

/** The decoder's marker of an unchanged TOAST value, not sent. */
export { TOAST };
/** One column value: text output form, NULL, or "unchanged TOAST value, not sent". */
export type Val = string | null | typeof TOAST;
export type Row = Val[];

export const hasToast = (row: Row) => row.includes(TOAST);

/** Fills unchanged-TOAST markers of `row` from `base` (which may itself hold markers). */
export const fill = (row: Row, base: Row): Row => row.map((v, i) => (v === TOAST ? base[i]! : v));

/** A tuple that pgoutput sent in binary format: the applier only takes text. */
export class BinaryColumnError extends Error {
  constructor(readonly column: number) {
    super(`binary column ${column}`);
  }
}

/**
 * The approximate memory a decoded tuple holds as a buffered row (text lengths plus 16 per
 * column); the tuple itself is the row. Throws BinaryColumnError for a binary value.
 */
export function rowBytes(tuple: TupleValue[]): number {
  let bytes = 16 * tuple.length;
  for (let i = 0; i < tuple.length; i++) {
    const v = tuple[i];
    if (typeof v === 'string') bytes += v.length;
    else if (v instanceof Buffer) throw new BinaryColumnError(i);
  }
  return bytes;
}

/**
 * An unambiguous string identity for a list of values: text output never contains NUL, so a
 * single value is itself (NULL = one NUL character), and several values are type-prefixed and
 * NUL-separated.
 */
export function identity(values: Val[]): string {
  if (values.length === 1) {
    const v = values[0]!;
    return v === null ? '\u0000' : v === TOAST ? '\u0000u' : v;
  }
  let id = '';
  for (let i = 0; i < values.length; i++) {
    const v = values[i]!;
    id += (i > 0 ? '\u0000' : '') + (v === null ? 'n' : v === TOAST ? 'u' : 't' + v);
  }
  return id;
}

const NEEDS_ESCAPE = /["\\]/;
const ESCAPE = /["\\]/g;

/** A PostgreSQL array literal of text values, every element quoted, for the element type's own input function. */
export function arrayLiteral(values: (string | null)[], delim: string): string {
  const parts = new Array<string>(values.length);
  for (let i = 0; i < values.length; i++) {
    const v = values[i]!;
    parts[i] = v === null ? 'NULL' : NEEDS_ESCAPE.test(v) ? `"${v.replace(ESCAPE, '\\$&')}"` : `"${v}"`;
  }
  return `{${parts.join(delim)}}`;
}

const COPY_SPECIAL = /[\\\n\r\t]/;
const COPY_ESCAPES: Record<string, string> = { '\\': '\\\\', '\n': '\\n', '\r': '\\r', '\t': '\\t' };
const COPY_ESCAPE = /[\\\n\r\t]/g;

/** Rows as COPY text format, in blocks of about 1 MiB: the type's input function sees exactly the text output the source sent. */
export function* copyText(rows: Row[], cols: number[]): Generator<string> {
  let lines: string[] = [];
  let size = 0;
  for (const row of rows) {
    let line = '';
    for (let j = 0; j < cols.length; j++) {
      const v = row[cols[j]!] as string | null;
      if (j > 0) line += '\t';
      line += v === null ? '\\N' : COPY_SPECIAL.test(v) ? v.replace(COPY_ESCAPE, (c) => COPY_ESCAPES[c]!) : v;
    }
    lines.push(line);
    size += line.length;
    if (size >= 1 << 20) {
      yield lines.join('\n') + '\n';
      lines = [];
      size = 0;
    }
  }
  if (lines.length > 0) yield lines.join('\n') + '\n';
}

/** Bound parameters of one statement, each referenced with its cast. */
export class Params {
  readonly values: string[] = [];
  add(value: string | null, cast: string): string {
    this.values.push(value as string);
    return `$${this.values.length}::${cast}`;
  }
}

export const truncateText = (v: string, max = 80) => (v.length > max ? `${v.slice(0, max)}…(${v.length} chars)` : v);

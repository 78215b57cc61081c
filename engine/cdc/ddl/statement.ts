/**
 * A captured schema change as the applier reads it (a row of pgferry_capture.ddl_commands),
 * whether the migration's selection concerns it, and whether its statement text can be run
 * on the target as it is. Pure.
 */
import { isSelected, SYSTEM_SCHEMAS, type TableRef } from '../../catalog/tables.js';
import type { MigrationSpec } from '../../spec/index.js';

export interface CapturedObject {
  type: string;
  schema: string;
  identity: string;
  /** The table the object belongs to (itself for a table), when the source could tell. */
  table: TableRef | null;
  /** A partition: published through its root, never added to a publication of its own. */
  partition?: boolean;
}

export interface CapturedDdl {
  id: string;
  xid: string;
  commandTag: string;
  objects: CapturedObject[];
  searchPath: string;
  /** The source session's whole query text (current_query()). */
  statement: string;
  /** Publications the trigger added a table created by this statement to. */
  published: string[];
  publishError: string | null;
}

/** A capture row from its column values by name (pgoutput's text form). */
export function capturedDdl(values: Record<string, string | null>): CapturedDdl {
  const text = (name: string) => values[name] ?? '';
  return {
    id: text('id'),
    xid: text('xid'),
    commandTag: text('command_tag'),
    objects: JSON.parse(values.objects ?? '[]') as CapturedObject[],
    searchPath: text('search_path'),
    statement: text('statement'),
    published: parseTextArray(values.published ?? '{}'),
    publishError: values.publish_error ?? null,
  };
}

/** A text[] in its output form; publication names are plain identifiers, quoted only when they hold odd characters. */
function parseTextArray(literal: string): string[] {
  const body = literal.replace(/^\{|\}$/g, '');
  if (body === '') return [];
  return (body.match(/"(?:[^"\\]|\\.)*"|[^,]+/g) ?? []).map((item) => (item.startsWith('"') ? item.slice(1, -1).replace(/\\(.)/g, '$1') : item));
}

type Selection = MigrationSpec['objects'];

const ignoredSchema = (schema: string) => SYSTEM_SCHEMAS.includes(schema) || schema.startsWith('pg_');

/** A schema the selection may hold tables of (include names it, or include is empty and exclude does not take all of it). */
export function schemaSelected(selection: Selection, schema: string): boolean {
  if (ignoredSchema(schema)) return false;
  if (selection.exclude.some((rule) => rule.schema === schema && rule.tables.includes('*'))) return false;
  return selection.include.length === 0 || selection.include.some((rule) => rule.schema === schema);
}

/**
 * What the selection makes of a captured change: 'table' when it touches a selected table,
 * 'schema' when it touches an object of a selected schema that belongs to no known table (a
 * sequence, a view, an index dropped: the target must have the object for it to apply),
 * undefined when it is none of the migration's business.
 */
export function concern(selection: Selection, ddl: CapturedDdl): 'table' | 'schema' | undefined {
  if (privilegesOnly(ddl)) return undefined;
  // Its rows are computed, not streamed: FinishCutover refreshes every materialized view once drained.
  if (ddl.commandTag === 'REFRESH MATERIALIZED VIEW') return undefined;
  if (ddl.objects.some((o) => o.table && isSelected(selection, o.table))) return 'table';
  if (ddl.objects.some((o) => o.table)) return undefined;
  return ddl.objects.some((o) => schemaSelected(selection, o.schema)) ? 'schema' : undefined;
}

/**
 * Changes to privileges and owners during CDC are not replicated (roles differ between source
 * and target; the schema migration sets them once, in post-data): GRANT, REVOKE, default
 * privileges, security labels, and an ALTER that only changes an owner are left alone.
 */
function privilegesOnly(ddl: CapturedDdl): boolean {
  if (['GRANT', 'REVOKE', 'ALTER DEFAULT PRIVILEGES', 'SECURITY LABEL'].includes(ddl.commandTag)) return true;
  const statements = splitStatements(ddl.statement);
  return ddl.commandTag.startsWith('ALTER ') && statements.length === 1 && /^\s*ALTER\s+[^;]*\sOWNER\s+TO\s+("[^"]+"|[\w$]+)\s*;?\s*$/i.test(stripComments(statements[0]!));
}

/**
 * The statements of a query text: split at top-level semicolons, skipping quoted strings,
 * quoted identifiers, dollar-quoted bodies and comments; empty statements dropped.
 */
export function splitStatements(text: string): string[] {
  const statements: string[] = [];
  let start = 0;
  let i = 0;
  const n = text.length;
  while (i < n) {
    const c = text[i]!;
    const next = text[i + 1];
    if (c === "'" || c === '"') {
      i = skipQuoted(text, i, c);
    } else if (c === '-' && next === '-') {
      const end = text.indexOf('\n', i);
      i = end < 0 ? n : end + 1;
    } else if (c === '/' && next === '*') {
      i = skipBlockComment(text, i);
    } else if (c === '$') {
      const tag = /^\$(?:[A-Za-z_][A-Za-z0-9_]*)?\$/.exec(text.slice(i));
      if (tag && !/[A-Za-z0-9_]/.test(text[i - 1] ?? '')) {
        const end = text.indexOf(tag[0], i + tag[0].length);
        i = end < 0 ? n : end + tag[0].length;
      } else i++;
    } else if (c === ';') {
      statements.push(text.slice(start, i));
      start = ++i;
    } else i++;
  }
  statements.push(text.slice(start));
  return statements.filter((s) => stripComments(s).trim() !== '');
}

function skipQuoted(text: string, i: number, quote: string): number {
  // E'…' strings escape with backslashes; standard strings and identifiers only by doubling.
  const escapes = quote === "'" && /[eE]/.test(text[i - 1] ?? '') && !/[A-Za-z0-9_]/.test(text[i - 2] ?? '');
  let j = i + 1;
  while (j < text.length) {
    if (escapes && text[j] === '\\') j += 2;
    else if (text[j] === quote) {
      if (text[j + 1] === quote) j += 2;
      else return j + 1;
    } else j++;
  }
  return j;
}

function skipBlockComment(text: string, i: number): number {
  let depth = 0;
  let j = i;
  while (j < text.length) {
    if (text.startsWith('/*', j)) {
      depth++;
      j += 2;
    } else if (text.startsWith('*/', j)) {
      depth--;
      j += 2;
      if (depth === 0) return j;
    } else j++;
  }
  return j;
}

/** The text without leading comments. */
function stripComments(statement: string): string {
  let s = statement.trimStart();
  for (;;) {
    if (s.startsWith('--')) {
      const end = s.indexOf('\n');
      s = end < 0 ? '' : s.slice(end + 1).trimStart();
    } else if (s.startsWith('/*')) {
      s = s.slice(skipBlockComment(s, 0)).trimStart();
    } else return s;
  }
}

/** Command tags whose statement computes rows: run on the target, it would not give the source's rows. */
const COMPUTED_ROWS = new Set(['CREATE TABLE AS', 'SELECT INTO', 'CREATE MATERIALIZED VIEW', 'REFRESH MATERIALIZED VIEW']);

/** Statements a multi-statement text may hold besides DDL: their rows are streamed, or they change nothing. */
const PLAIN_VERBS = new Set(['BEGIN', 'START', 'COMMIT', 'END', 'SAVEPOINT', 'RELEASE', 'SET', 'RESET', 'INSERT', 'UPDATE', 'DELETE', 'TRUNCATE', 'ANALYZE', 'VACUUM']);
const DDL_VERBS = new Set(['CREATE', 'ALTER', 'DROP', 'COMMENT', 'GRANT', 'REVOKE', 'SECURITY', 'IMPORT', 'REINDEX', 'CLUSTER']);
/** Words between a DDL verb and its object that the command tag leaves out. */
const MODIFIERS = new Set(['OR', 'REPLACE', 'UNIQUE', 'TEMP', 'TEMPORARY', 'UNLOGGED', 'GLOBAL', 'LOCAL', 'TRUSTED', 'PROCEDURAL', 'RECURSIVE', 'DEFAULT']);

const words = (statement: string) => (statement.toUpperCase().match(/[A-Z_]+|\S/g) ?? []).slice(0, 8);

/** Whether a statement is of the command the tag names ("CREATE UNIQUE INDEX …" is a CREATE INDEX). */
function isCommand(statement: string, tag: string): boolean {
  const [verb, ...rest] = words(statement);
  const wanted = tag.toUpperCase().split(' ');
  const got = [verb, ...rest.filter((w) => !MODIFIERS.has(w))];
  return wanted.every((w, i) => got[i] === w);
}

export type Runnable = { statement: string } | { reason: string };

/**
 * The statement to run on the target for a captured change, or why it cannot be run as it is.
 * The query text is the source session's whole text: one statement, of the captured command
 * (not a DO block or a function that ran DDL); or several, of DDL, transaction control and
 * row changes only, where the change is the `ordinal`-th of its command tag in that
 * transaction's text and the statement found must name its object. A statement that computes
 * rows is never run. CONCURRENTLY is dropped from index statements: the applier runs them
 * inside its transaction.
 */
export function runnableStatement(ddl: CapturedDdl, ordinal = 0): Runnable {
  if (COMPUTED_ROWS.has(ddl.commandTag)) return { reason: `${ddl.commandTag} computes its rows, which would not be the source's on the target` };
  const statements = splitStatements(ddl.statement).map((s) => stripComments(s).trim());
  let statement: string | undefined;
  if (statements.length === 1) {
    statement = statements[0]!;
    if (words(statement)[0] !== words(ddl.commandTag)[0]) {
      return { reason: `the statement the source ran is not the ${ddl.commandTag} itself (DDL run by a function or a DO block)` };
    }
  } else {
    const other = statements.find((s) => !PLAIN_VERBS.has(words(s)[0] ?? '') && !DDL_VERBS.has(words(s)[0] ?? ''));
    if (other !== undefined) return { reason: `its query text of ${statements.length} statements also runs "${other.slice(0, 60)}", which may change the schema itself` };
    statement = statements.filter((s) => isCommand(s, ddl.commandTag))[ordinal];
    if (statement === undefined || !namesObject(statement, ddl)) {
      return { reason: `pgferry cannot tell which of the ${statements.length} statements of its query text it is` };
    }
  }
  return {
    statement: statement.replace(/^(CREATE\s+(?:UNIQUE\s+)?INDEX\s+)CONCURRENTLY\s+/i, '$1').replace(/^(DROP\s+INDEX\s+)CONCURRENTLY\s+/i, '$1'),
  };
}

/** The statement mentions the change's table or object by name (a check that the right statement of a text was found). */
function namesObject(statement: string, ddl: CapturedDdl): boolean {
  const text = statement.toLowerCase();
  const names = ddl.objects.flatMap((o) => [o.table?.name, o.identity.split('.').pop()?.replace(/^"|"$/g, '')]);
  const named = (name: string) => new RegExp(`(^|[^a-z0-9_$])${name.toLowerCase().replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}([^a-z0-9_$]|$)`).test(text);
  return names.some((name) => name !== undefined && name !== '' && named(name));
}

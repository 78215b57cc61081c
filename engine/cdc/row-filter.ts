/**
 * Row and column filters under CDC (issue 15 item 2): which rows (`where`) and columns
 * (`columns`/`excludeColumns`) of each table the stream carries to the target, the same ones the
 * full load copied.
 *
 * Rows. An UPDATE that moves a row into the filter becomes an INSERT on the target, one that moves
 * it out a DELETE; changes of rows outside stay out. That needs the row's old image: the table
 * has REPLICA IDENTITY FULL, or a key whose columns hold every column the filter reads (then a
 * row can only cross the filter when its key changes, which pgoutput sends with the old key).
 * `filterProblems` says when a table has neither, with the statement that fixes it.
 *
 * Where it is evaluated. On a PostgreSQL 15+ source the publication carries the filter as its
 * row filter when PostgreSQL accepts the expression there (built-in immutable functions only):
 * pgoutput then evaluates it on the old and the new row and already turns moves into inserts
 * and deletes (PostgreSQL docs, "Row Filters", UPDATE transformations). Otherwise (13, 14, or an
 * expression the publication refuses) the applier evaluates it, on a source session
 * (`SourceRowFilter`): the values pgoutput sent, cast to the source's column types, under the
 * source's collations, functions and settings, the same server and rules that chose the rows of
 * the full load. The target could not do that exactly: it may lack the functions the filter
 * calls or the columns it reads (excludedColumns "drop"), and sort text under other collations.
 *
 * Columns. A `columns` allow-list becomes the publication's column list on 15+ when the table's
 * key is in it (a list must cover the replica identity, and under FULL every column); an
 * exclusion list does not (a column added later on the source would not be published). The
 * applier leaves every column not selected out of what it writes, whichever way it came.
 */
import type pg from 'pg';
import { listTables, tableKey, tableOptions, type TableInfo, type TableOptions, type TableRef } from '../catalog/tables.js';
import { SOURCE_READ_SESSION_SQL, serverVersion } from '../connect/index.js';
import { PgferryError } from '../errors.js';
import type { MigrationSpec } from '../spec/index.js';
import { whereCondition, whereField } from '../spec/where.js';
import { messageOf, oneStatement, quoteIdent, quoteTable } from '../sql.js';
import type { StreamFilters } from './apply/filter.js';
import type { RelationMessage } from './pgoutput.js';

type Selection = MigrationSpec['objects'];

/** What the applier does to one table's changes. */
export interface TableFilter {
  /** The `where` filter the applier evaluates (undefined: none, or the publication's row filter does it). */
  where?: string;
  /** Source columns that are not carried to the target. */
  excluded: Set<string>;
}

/** Whether a selection filters any table's rows or columns. */
export const hasFilters = (selection: Selection) =>
  Object.values(selection.tables).some((o) => o.where !== undefined || o.columns !== undefined || o.excludeColumns !== undefined);

/** A table's own options, or its partitioned root's. */
export const optionsOf = (selection: Selection, table: TableInfo): TableOptions => tableOptions(selection, table.root ?? table);

/** The source columns of `table` the options leave out (generated columns are never carried anyway). */
export function excludedColumns(columnNames: string[], options: TableOptions): Set<string> {
  return new Set(
    columnNames.filter((name) => (options.columns !== undefined && !options.columns.includes(name)) || (options.excludeColumns?.includes(name) ?? false)),
  );
}

interface Identity {
  kind: 'default' | 'nothing' | 'full' | 'index';
  /** The columns of the key that identifies rows (primary key, or the REPLICA IDENTITY index); null without one. */
  key: string[] | null;
}

const IDENTITY_KINDS = { d: 'default', n: 'nothing', f: 'full', i: 'index' } as const;

/** How the source identifies `table`'s rows in UPDATE and DELETE messages. */
export async function replicaIdentityOf(client: pg.Client, table: TableRef): Promise<Identity> {
  const { rows } = await client.query<{ identity: keyof typeof IDENTITY_KINDS; key: string[] | null }>(
    `SELECT c.relreplident::text AS identity,
            (SELECT array_agg(a.attname::text ORDER BY k.ord)
               FROM pg_index i, unnest(i.indkey) WITH ORDINALITY k(attnum, ord), pg_attribute a
              WHERE i.indrelid = c.oid AND a.attrelid = c.oid AND a.attnum = k.attnum
                AND CASE c.relreplident WHEN 'd' THEN i.indisprimary AND i.indimmediate WHEN 'i' THEN i.indisreplident ELSE false END) AS key
       FROM pg_class c WHERE c.oid = $1::regclass`,
    [quoteTable(table)],
  );
  const row = rows[0]!;
  return { kind: IDENTITY_KINDS[row.identity], key: row.key };
}

/** The statement that gives a table the old row images a filter needs. */
export const replicaIdentityFullSql = (table: TableRef) => `ALTER TABLE ${quoteTable(table)} REPLICA IDENTITY FULL;`;

/**
 * Why the stream cannot tell whether `table`'s updates and deletes cross its `where` filter, or
 * undefined when it can: REPLICA IDENTITY FULL, or a key holding every column the filter reads.
 * PostgreSQL decides what the filter reads: it must compile against a relation holding only the
 * key columns (in a READ ONLY transaction that is rolled back).
 */
async function whereIdentityProblem(client: pg.Client, table: TableRef, where: string, identity: Identity): Promise<string | undefined> {
  if (identity.kind === 'full') return undefined;
  const fix = `run ${replicaIdentityFullSql(table)} on the source`;
  const name = `${table.schema}.${table.name}`;
  if (!identity.key) {
    return `${name} has a where filter but no replica identity (no primary key or identity index), so its updates and deletes carry no old row: ${fix}`;
  }
  const condition = whereCondition(where, table);
  await client.query('BEGIN READ ONLY');
  try {
    await client.query(SOURCE_READ_SESSION_SQL);
    await client.query(
      oneStatement({ text: `EXPLAIN SELECT 1 FROM (SELECT ${identity.key.map(quoteIdent).join(', ')} FROM ONLY ${quoteTable(table)}) AS ${quoteIdent(table.name)} WHERE ${condition}` }),
    );
    return undefined;
  } catch (error) {
    return (
      `${name}'s where filter reads columns outside its replica identity key (${identity.key.join(', ')}): ${messageOf(error)}; ` +
      `an UPDATE that moves a row across the filter would not carry its old values: ${fix}`
    );
  } finally {
    await client.query('ROLLBACK');
  }
}

/** Why `excluded` columns cannot be left out under CDC, or undefined: rows are identified by their key. */
function excludedKeyProblem(table: TableRef, excluded: Set<string>, identity: Identity): string | undefined {
  const inKey = identity.kind === 'full' ? [] : (identity.key ?? []).filter((c) => excluded.has(c));
  if (inKey.length === 0) return undefined;
  return (
    `${table.schema}.${table.name}: column(s) ${inKey.map((c) => `"${c}"`).join(', ')} are left out but identify its rows (replica identity key), ` +
    `so updates and deletes could not find them on the target: keep them, or run ${replicaIdentityFullSql(table)} on the source`
  );
}

/**
 * Why `table`'s `where` filter and left-out columns cannot be replicated exactly (`whereIdentityProblem`
 * above, and a left-out key column), each with the statement that fixes it; empty when they can.
 * Precheck and the replicator's start ask the same.
 */
export async function filterProblems(client: pg.Client, table: TableRef, where: string | undefined, excluded: Set<string>): Promise<string[]> {
  if (!where && excluded.size === 0) return [];
  const identity = await replicaIdentityOf(client, table);
  const problems = [where ? await whereIdentityProblem(client, table, where, identity) : undefined, excludedKeyProblem(table, excluded, identity)];
  return problems.filter((problem): problem is string => problem !== undefined);
}

/** A table of the publication with what it may carry as row filter and column list (PostgreSQL 15+). */
export interface PublishedTable extends TableRef {
  rowFilter?: string;
  columnList?: string[];
}

/**
 * Each data table of the selection with the row filter and column list the publication may
 * carry exactly (see the header): a filter whose columns the replica identity covers (the source
 * would otherwise refuse UPDATE and DELETE on the table), an allow-list holding the table's key
 * (not under REPLICA IDENTITY FULL). Nothing on sources before 15.
 */
export async function publishedTables(client: pg.Client, selection: Selection, tables: TableInfo[]): Promise<PublishedTable[]> {
  const version = await serverVersion(client);
  const published: PublishedTable[] = [];
  for (const table of tables) {
    const ref: PublishedTable = { schema: table.schema, name: table.name };
    const options = optionsOf(selection, table);
    if (version >= 150000 && (options.where || options.columns)) {
      const identity = await replicaIdentityOf(client, table);
      if (options.where && !(await whereIdentityProblem(client, table, options.where, identity))) ref.rowFilter = options.where;
      if (options.columns) {
        const stored = table.columns.filter((c) => !c.generated).map((c) => c.name);
        const columns = stored.filter((c) => options.columns!.includes(c));
        if (identity.kind !== 'full' && identity.key && identity.key.every((k) => columns.includes(k)) && columns.length < stored.length) ref.columnList = columns;
      }
    }
    published.push(ref);
  }
  return published;
}

/**
 * The applier's filters for every selected table, as the publication leaves them to it: a
 * `where` the publication does not carry as row filter is evaluated by the applier, and must have
 * the old row images it needs (ReplicationFailed naming the statement to run otherwise).
 */
export async function applierFilters(client: pg.Client, selection: Selection, publicationName: string): Promise<Map<string, TableFilter>> {
  const filters = new Map<string, TableFilter>();
  if (!hasFilters(selection)) return filters;
  const rowFiltered = new Set<string>();
  if ((await serverVersion(client)) >= 150000) {
    const { rows } = await client.query<{ schema: string; name: string }>(
      'SELECT schemaname AS schema, tablename AS name FROM pg_publication_tables WHERE pubname = $1 AND rowfilter IS NOT NULL',
      [publicationName],
    );
    for (const row of rows) rowFiltered.add(tableKey(row));
  }
  const problems: string[] = [];
  for (const table of await listTables(client, selection)) {
    if (table.kind !== 'table') continue;
    const options = optionsOf(selection, table);
    const filter: TableFilter = { excluded: excludedColumns(table.columns.map((c) => c.name), options) };
    if (options.where && !rowFiltered.has(tableKey(table))) filter.where = options.where;
    problems.push(...(await filterProblems(client, table, filter.where, filter.excluded)));
    if (filter.where || filter.excluded.size > 0) filters.set(tableKey(table), filter);
  }
  if (problems.length > 0) {
    throw new PgferryError('pgferry.FilterNeedsReplicaIdentity', `Cannot replicate the filtered tables: ${problems.join('; ')}. Then resume the migration.`);
  }
  return filters;
}

/**
 * Evaluates `where` filters for the applier on a source session of its own: each batch of rows
 * in one statement, the values pgoutput sent (text) cast to the source's column types. READ ONLY
 * and through the extended protocol: the filter stays an expression that only reads.
 */
export class SourceRowFilter {
  private readonly types = new WeakMap<RelationMessage, string[]>();

  private constructor(private readonly client: pg.Client) {}

  static async open(client: pg.Client): Promise<SourceRowFilter> {
    await client.query(`${SOURCE_READ_SESSION_SQL}; SET default_transaction_read_only = on; SET statement_timeout = 0`);
    return new SourceRowFilter(client);
  }

  /** Which of `rows` (full-width values in the relation's column order; null where unknown) the filter selects. */
  async matching(relation: RelationMessage, where: string, rows: (string | null)[][]): Promise<boolean[]> {
    if (rows.length === 0) return [];
    const table = { schema: relation.schema, name: relation.name };
    const types = await this.columnTypes(relation);
    const inputs = relation.columns.map((_, i) => `pgferry_v${i}`);
    const text = `SELECT pgferry_input.pgferry_ord::int8::text AS ord
        FROM unnest(${inputs.map((_, i) => `$${i + 1}::text[]`).join(', ')}) WITH ORDINALITY AS pgferry_input(${inputs.join(', ')}, pgferry_ord)
        CROSS JOIN LATERAL (SELECT ${relation.columns.map((c, i) => `pgferry_input.${inputs[i]}::${types[i]} AS ${quoteIdent(c.name)}`).join(', ')}) AS ${quoteIdent(table.name)}
       WHERE ${whereCondition(where, table)}`;
    try {
      const { rows: selected } = await this.client.query<{ ord: string }>(
        oneStatement({ text, values: relation.columns.map((_, i) => rows.map((row) => row[i] ?? null)) }),
      );
      const matches = new Array<boolean>(rows.length).fill(false);
      for (const { ord } of selected) matches[Number(ord) - 1] = true;
      return matches;
    } catch (error) {
      throw new PgferryError('pgferry.FilterFailed', `Evaluating ${whereField(table)} on the source for replicated rows failed: ${messageOf(error)}.`, { cause: error });
    }
  }

  /** The source's type of each column, as format_type names it under the session's search_path (pg_catalog: qualified). */
  private async columnTypes(relation: RelationMessage): Promise<string[]> {
    const known = this.types.get(relation);
    if (known) return known;
    const { rows } = await this.client.query<{ type: string }>(
      'SELECT format_type(t.oid, t.mod) AS type FROM unnest($1::oid[], $2::int4[]) WITH ORDINALITY AS t(oid, mod, ord) ORDER BY t.ord',
      [relation.columns.map((c) => c.typeOid), relation.columns.map((c) => c.typeMod)],
    );
    const types = rows.map((r) => r.type);
    this.types.set(relation, types);
    return types;
  }
}

/** The stream's filters as the applier uses them: each table's filter, and the source session that evaluates `where`. */
export class SourceStreamFilters implements StreamFilters {
  private constructor(
    private readonly tables: Map<string, TableFilter>,
    private readonly evaluator: SourceRowFilter,
  ) {}

  /** The filters of `selection` the publication leaves to the applier; undefined when there are none. `client` becomes the evaluating session. */
  static async open(client: pg.Client, selection: Selection, publicationName: string): Promise<SourceStreamFilters | undefined> {
    const tables = await applierFilters(client, selection, publicationName);
    if (tables.size === 0) return undefined;
    return new SourceStreamFilters(tables, await SourceRowFilter.open(client));
  }

  forRelation(relation: RelationMessage): TableFilter | undefined {
    return this.tables.get(tableKey(relation));
  }

  matching(relation: RelationMessage, where: string, rows: (string | null)[][]): Promise<boolean[]> {
    return this.evaluator.matching(relation, where, rows);
  }
}

/**
 * The source side of CDC: the publication naming the migrated tables, and the logical
 * replication slot created together with an exported snapshot. The full load reads at that
 * snapshot and the slot streams everything committed after its consistent point, so the
 * two meet with no gap and no duplicate (docs/architecture.md, "Consistency: no gap, no duplicate").
 */
import type pg from 'pg';
import { type TableRef } from '../catalog/tables.js';
import { codeOf, quoteIdent, quoteTable, messageOf, oneStatement, sleep, withTransaction } from '../sql.js';
import { whereCondition } from '../spec/where.js';
import { serverVersion } from '../connect/index.js';
import { PgferryError } from '../errors.js';
import { removeDdlCapture } from './ddl/capture.js';

/** PostgreSQL identifiers are at most 63 bytes (NAMEDATALEN - 1); the result is ASCII only. */
export function defaultSlotName(migration: string): string {
  return `pgferry_${migration.toLowerCase().replace(/[^a-z0-9_]/g, '_')}`.slice(0, 63);
}

/** The slot and publication a migration streams through: cdc.slotName (default from its name) and cdc.publicationName (default the slot's name). */
export function replicationNames(spec: { name: string; cdc: { slotName?: string; publicationName?: string } }): { slotName: string; publicationName: string } {
  const slotName = spec.cdc.slotName ?? defaultSlotName(spec.name);
  return { slotName, publicationName: spec.cdc.publicationName ?? slotName };
}

type Operation = 'insert' | 'update' | 'delete' | 'truncate';
const OPERATIONS: Operation[] = ['insert', 'update', 'delete', 'truncate'];

export interface PublicationSpec {
  name: string;
  /** With the row filter and column list each may carry on PostgreSQL 15+ (row-filter.ts, publishedTables). */
  tables: (TableRef & { rowFilter?: string; columnList?: string[] })[];
  /** Published operations; each defaults to true. */
  operations?: Partial<Record<Operation, boolean>>;
}


/** Creates the publication for exactly `spec.tables`, or brings an existing one in line with the spec. */
export async function ensurePublication(source: pg.Client, spec: PublicationSpec): Promise<'created' | 'updated'> {
  if (spec.tables.length === 0) {
    throw new PgferryError('pgferry.PublicationEmpty', `Publication ${spec.name} would publish no table: select at least one table for CDC.`);
  }
  const publish = OPERATIONS.filter((op) => spec.operations?.[op] ?? true).join(', ');
  const options = [`publish = '${publish}'`];
  // Changes to a partition are published under the partition's own name unless
  // publish_via_partition_root is set (PG 13+). The target may partition differently (or not at
  // all) and the applier maps changes by the tables it migrated, which are the roots: with the
  // option, every change arrives as a change of the root table, whatever leaf it hit.
  const { rows } = await source.query<{ partitioned: boolean | null }>(
    `SELECT bool_or(c.relkind = 'p') AS partitioned
       FROM unnest($1::text[], $2::text[]) AS t(schema, name)
       JOIN pg_namespace n ON n.nspname = t.schema
       JOIN pg_class c ON c.relnamespace = n.oid AND c.relname = t.name`,
    [spec.tables.map((t) => t.schema), spec.tables.map((t) => t.name)],
  );
  if ((await serverVersion(source)) >= 130000) options.push(`publish_via_partition_root = ${rows[0]?.partitioned ? 'true' : 'false'}`);

  const name = quoteIdent(spec.name);
  const tables = spec.tables.map(quoteTable).join(', ');
  const existing = await source.query('SELECT 1 FROM pg_publication WHERE pubname = $1', [spec.name]);
  try {
    // One transaction: no change is ever decoded under the publication without its filters.
    await withTransaction(source, async () => {
      if (existing.rowCount === 0) {
        await source.query(`CREATE PUBLICATION ${name} FOR TABLE ${tables} WITH (${options.join(', ')})`);
      } else {
        await source.query(`ALTER PUBLICATION ${name} SET TABLE ${tables}`);
        await source.query(`ALTER PUBLICATION ${name} SET (${options.join(', ')})`);
      }
      await addRowFiltersAndColumnLists(source, name, spec.tables);
    });
    return existing.rowCount === 0 ? 'created' : 'updated';
  } catch (error) {
    throw new PgferryError('pgferry.PublicationFailed', `Cannot ${existing.rowCount === 0 ? 'create' : 'update'} publication ${spec.name} on the source: ${messageOf(error)}.`, { cause: error });
  }
}

/**
 * Gives each table its row filter and column list (PostgreSQL 15+), one at a time in a savepoint:
 * one that PostgreSQL refuses (a filter calling a function that is not a built-in immutable one,
 * for instance) leaves that table published whole, and the applier filters it (row-filter.ts
 * reads which tables the publication filters from pg_publication_tables).
 */
async function addRowFiltersAndColumnLists(source: pg.Client, publication: string, tables: PublicationSpec['tables']): Promise<void> {
  for (const table of tables) {
    if (!table.rowFilter && !table.columnList) continue;
    const columns = table.columnList ? ` (${table.columnList.map(quoteIdent).join(', ')})` : '';
    const where = table.rowFilter ? ` WHERE ${whereCondition(table.rowFilter, table)}` : '';
    await source.query('SAVEPOINT pgferry_filter');
    try {
      await source.query(`ALTER PUBLICATION ${publication} DROP TABLE ${quoteTable(table)}`);
      await source.query(oneStatement({ text: `ALTER PUBLICATION ${publication} ADD TABLE ${quoteTable(table)}${columns}${where}` }));
      await source.query('RELEASE SAVEPOINT pgferry_filter');
    } catch {
      await source.query('ROLLBACK TO SAVEPOINT pgferry_filter');
      if (table.rowFilter && table.columnList) await addRowFiltersAndColumnLists(source, publication, [{ schema: table.schema, name: table.name, columnList: table.columnList }]);
    }
  }
}

export interface CreatedSlot {
  slotName: string;
  /** LSN from which the slot streams: every transaction committed after it, none before. */
  consistentLsn: string;
  /** Exported snapshot id: the database exactly as of `consistentLsn`. */
  snapshot: string;
  plugin: 'pgoutput';
}

export interface SlotHolder {
  slot: CreatedSlot;
  /** Ends the replication connection, releasing the exported snapshot (the slot stays). */
  release(): Promise<void>;
}

/**
 * Creates the logical slot over a replication connection (`replication: 'database'`) and keeps
 * that connection open and idle: the exported snapshot is valid only until its creator runs
 * another command or disconnects.
 */
export async function createSlotWithSnapshot(
  connectReplication: () => Promise<pg.Client>,
  slotName: string,
  options: { temporary?: boolean } = {},
): Promise<SlotHolder> {
  if (!/^[a-z0-9_]{1,63}$/.test(slotName)) {
    throw new PgferryError('pgferry.SlotNameInvalid', `"${slotName}" is not a valid replication slot name: use 1 to 63 lower-case letters, digits and underscores.`);
  }
  const client = await connectReplication();
  // An idle holder whose connection drops must not crash the process; importing the snapshot then fails with SnapshotLost.
  client.on('error', () => undefined);
  const close = () => client.end().catch(() => undefined);
  const slot = quoteIdent(slotName); // an identifier in the replication grammar too
  let created = false;
  try {
    const version = await serverVersion(client);
    // PG 15 introduced the parenthesized option list; 13 and 14 only know the legacy keyword.
    // A temporary slot goes with its connection: release() drops it.
    const kind = options.temporary ? 'TEMPORARY LOGICAL' : 'LOGICAL';
    const command = version >= 150000
      ? `CREATE_REPLICATION_SLOT ${slot} ${kind} pgoutput (SNAPSHOT 'export')`
      : `CREATE_REPLICATION_SLOT ${slot} ${kind} pgoutput EXPORT_SNAPSHOT`;
    let result: pg.QueryResult<{ slot_name: string; consistent_point: string; snapshot_name: string | null; output_plugin: string }>;
    try {
      result = await client.query(command);
    } catch (error) {
      throw slotError(slotName, error);
    }
    created = true;
    const row = result.rows[0];
    if (!row?.consistent_point || !row.snapshot_name) {
      throw new PgferryError('pgferry.SlotFailed', `Creating replication slot ${slotName} returned no consistent point or snapshot.`);
    }
    const holder: SlotHolder = {
      slot: { slotName: row.slot_name, consistentLsn: row.consistent_point, snapshot: row.snapshot_name, plugin: 'pgoutput' },
      release: close,
    };
    return holder;
  } catch (error) {
    // Never leave a slot nobody knows about: the caller gets no holder, so drop what was created.
    // Dropping a slot over the connection that created it releases the exported snapshot first.
    if (created) await client.query(`DROP_REPLICATION_SLOT ${slot}`).catch(() => undefined);
    await close();
    throw error instanceof PgferryError ? error : new PgferryError('pgferry.SlotFailed', `Cannot create replication slot ${slotName}: ${messageOf(error)}.`, { cause: error });
  }
}

function slotError(slotName: string, error: unknown): PgferryError {
  switch (codeOf(error)) {
    case '42710':
      return new PgferryError(
        'pgferry.SlotExists',
        `Replication slot ${slotName} already exists on the source. If it is left over from an earlier run, drop it (SELECT pg_drop_replication_slot('${slotName}')); to continue streaming from it instead, set cdc.resumeSlot.`,
        { cause: error },
      );
    case '53400':
      return new PgferryError(
        'pgferry.SlotsExhausted',
        `Cannot create replication slot ${slotName}: all max_replication_slots are in use on the source. Drop unused slots (see pg_replication_slots) or raise max_replication_slots (needs a restart).`,
        { cause: error },
      );
    default:
      return new PgferryError('pgferry.SlotFailed', `Cannot create replication slot ${slotName}: ${messageOf(error)}.`, { cause: error });
  }
}

const DROP_WAIT_MS = 10_000;

/**
 * Drops the slot (terminating a walsender that holds it) and the publication, and the DDL
 * capture when no other publication uses it; idempotent.
 */
export async function dropSlotAndPublication(
  source: pg.Client,
  names: { slotName: string; publicationName: string },
): Promise<{ slotDropped: boolean; publicationDropped: boolean }> {
  const deadline = Date.now() + DROP_WAIT_MS;
  let slotDropped = false;
  for (;;) {
    const { rows } = await source.query<{ active_pid: number | null }>('SELECT active_pid FROM pg_replication_slots WHERE slot_name = $1', [names.slotName]);
    if (rows.length === 0) break;
    if (rows[0]!.active_pid !== null) await source.query('SELECT pg_terminate_backend($1)', [rows[0]!.active_pid]);
    try {
      await source.query('SELECT pg_drop_replication_slot($1)', [names.slotName]);
      slotDropped = true;
      break;
    } catch (error) {
      const code = codeOf(error);
      if (code === '42704') break; // dropped meanwhile by someone else
      // 55006: still active, the terminated walsender has not exited yet.
      if (code !== '55006' || Date.now() > deadline) {
        throw new PgferryError('pgferry.SlotDropFailed', `Cannot drop replication slot ${names.slotName}: ${messageOf(error)}.`, { cause: error });
      }
      await sleep(100);
    }
  }
  const { rowCount } = await source.query('SELECT 1 FROM pg_publication WHERE pubname = $1', [names.publicationName]);
  if (rowCount) await source.query(`DROP PUBLICATION IF EXISTS ${quoteIdent(names.publicationName)}`);
  await removeDdlCapture(source, names.publicationName);
  return { slotDropped, publicationDropped: Boolean(rowCount) };
}

export async function slotState(
  source: pg.Client,
  slotName: string,
): Promise<{ exists: boolean; active: boolean; confirmedFlushLsn: string | null; restartLsn: string | null }> {
  const { rows } = await source.query<{ active: boolean; confirmed_flush_lsn: string | null; restart_lsn: string | null }>(
    'SELECT active, confirmed_flush_lsn::text, restart_lsn::text FROM pg_replication_slots WHERE slot_name = $1',
    [slotName],
  );
  const row = rows[0];
  return row
    ? { exists: true, active: row.active, confirmedFlushLsn: row.confirmed_flush_lsn, restartLsn: row.restart_lsn }
    : { exists: false, active: false, confirmedFlushLsn: null, restartLsn: null };
}

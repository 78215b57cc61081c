/**
 * The applier's side of DDL capture (capture.ts): a row inserted into the source's
 * pgferry_capture.ddl_commands is never applied as a row. What precedes it in the stream is
 * applied, then its statement runs on the target inside the same target transaction (so it
 * commits with the checkpoint of the source transaction that made it, or not at all), with the
 * source session's search_path; the applier then reads its target tables again, and pgoutput
 * sends new Relation messages for tables whose layout changed.
 *
 * cdc.ddl and resuming. Replication stops with a DdlNotAppliedError, recorded in
 * pgferry.ddl_commands by the capture id, when cdc.ddl is "pause" or "error", when the
 * statement cannot be run as it is (statement.ts), or when it fails on the target. When the
 * stream comes to the same change again (after `pgferry resume`):
 * - "pause": it is skipped (the user applied it by hand, or chose not to);
 * - "error": replication stops at it again, until cdc.ddl is changed;
 * - "replicate": a statement that failed runs again, and when it now fails with "already
 *   exists", or with "does not exist" where it first failed otherwise, the target already has
 *   the change (applied by hand): it counts as applied. One that stopped because it could not
 *   be run as it is (or under "pause") is skipped; one stopped under "error" runs.
 * A change committed while the full load ran, before post-data began reading the source's
 * definitions, is already in what post-data built: on its first run "already exists" or "does
 * not exist" counts as applied. After that point, such an error stops replication.
 */
import type pg from 'pg';
import { isSelected } from '../../catalog/tables.js';
import { isTransient } from '../../connect/index.js';
import { readDdlRecord, recordDdl, recordEvent, type DdlRecord } from '../../control/index.js';
import type { MigrationSpec } from '../../spec/index.js';
import { messageOf } from '../../sql.js';
import type { Applier } from '../apply/index.js';
import { StreamingFallback } from '../early-apply.js';
import { formatLsn, parseLsn, type PgoutputMessage, type TupleValue } from '../pgoutput.js';
import { narrowTruncate, type StreamTransaction } from '../stream-filter.js';
import { CAPTURE_TABLE } from './capture.js';
import { DdlNotAppliedError, FlushBeforeDdl } from './errors.js';
import { capturedDdl, concern, runnableStatement, type CapturedDdl } from './statement.js';

export type DdlMode = 'replicate' | 'pause' | 'error';

export interface DdlStageOptions {
  migration: string;
  mode: DdlMode;
  selection: MigrationSpec['objects'];
  /** The publication the migration streams: a table created in the selection must have joined it. */
  publicationName: string;
  /** Where the stream is (the commit LSN of the transaction received), noted by the replicator. */
  transaction: StreamTransaction;
  /** A target session outside the applier's transaction: records why replication stopped. */
  control: pg.ClientBase;
  /** Where the source's WAL was when post-data began reading its definitions (full+cdc), if it did. */
  postDataLsn?: string;
  /** The target's objects have other names than the source's (the spec's mapping): a captured statement names the source's. */
  renamed?: boolean;
  log: (message: string) => void;
}

type Decision = 'run' | 'retry' | 'skip' | 'stop';

/** What to do with a change that concerns the migration, given cdc.ddl and what happened to it before. */
export function decide(mode: DdlMode, prior: DdlRecord | undefined): Decision {
  if (mode === 'error') return 'stop';
  if (mode === 'pause') return prior ? 'skip' : 'stop';
  if (!prior) return 'run';
  if (prior.status === 'failed') return 'retry';
  return prior.detail === REJECTED ? 'run' : 'skip';
}

const REJECTED = 'rejected: cdc.ddl is "error"';
const ALREADY_EXISTS = new Set(['42P07', '42710', '42701', '42P06', '42723']);
const DOES_NOT_EXIST = new Set(['42P01', '42703', '42704', '42883']);
const RESUME = 'then run `pgferry resume SPEC`';

/** Interprets the capture table's messages in the stream; every other message passes through. */
export class DdlStage {
  private captureRelation: number | undefined;
  private columns: string[] = [];
  /** The query text of the change last skipped: the other changes of a multi-statement text go with it. */
  private lastSkipped: { xid: string; statement: string } | undefined;
  /** Changes seen so far of the current transaction's query text, by command tag (which statement of the text each is). */
  private seen = { key: '', counts: new Map<string, number>() };

  constructor(private readonly options: DdlStageOptions) {}

  /** The message to hand to the applier, or undefined when it was the capture table's; a promise only for a captured change, which it applies. */
  handle(message: PgoutputMessage, applier: Applier): PgoutputMessage | undefined | Promise<undefined> {
    switch (message.tag) {
      case 'relation':
        if (message.schema !== CAPTURE_TABLE.schema || message.name !== CAPTURE_TABLE.name) return message;
        this.captureRelation = message.relationId;
        this.columns = message.columns.map((c) => c.name);
        return undefined;
      case 'insert': {
        if (message.relationId !== this.captureRelation) return message;
        // A large transaction streamed in progress: its DDL is applied when it comes again whole.
        if (this.options.transaction.inProgress) throw new StreamingFallback('a schema change arrived in a transaction streamed while in progress');
        const values = Object.fromEntries(this.columns.map((name, i) => [name, textOf(message.newTuple[i])]));
        const ddl = capturedDdl(values);
        return this.apply(ddl, applier, this.ordinal(ddl)).then(() => undefined);
      }
      case 'update':
      case 'delete':
        return message.relationId === this.captureRelation ? undefined : message;
      case 'truncate':
        return narrowTruncate(message, (id) => id !== this.captureRelation);
      default:
        return message;
    }
  }

  /** How many changes of the same command tag came before this one from the same query text in the same transaction. */
  private ordinal(ddl: CapturedDdl): number {
    const key = `${ddl.xid}\u0000${ddl.statement}`;
    if (this.seen.key !== key) this.seen = { key, counts: new Map() };
    const ordinal = this.seen.counts.get(ddl.commandTag) ?? 0;
    this.seen.counts.set(ddl.commandTag, ordinal + 1);
    return ordinal;
  }

  private async apply(ddl: CapturedDdl, applier: Applier, ordinal: number): Promise<void> {
    const { migration, mode, log } = this.options;
    const scope = concern(this.options.selection, ddl);
    if (!scope) return;
    if (scope === 'schema' && !ddl.commandTag.startsWith('CREATE') && !(await applier.runInOrder((client) => objectsExist(client, ddl)))) {
      log(`schema change ${ddl.id} left alone: its object is not on the target (${ddl.statement})`);
      return;
    }
    if (this.lastSkipped && this.lastSkipped.xid === ddl.xid && this.lastSkipped.statement === ddl.statement) {
      await applier.runInOrder((client) => recordDdl(client, migration, ddl.id, ddl.statement, 'skipped', 'part of a query text skipped before'));
      return;
    }
    const prior = await readDdlRecord(this.options.control, migration, ddl.id);
    const decision = decide(mode, prior);
    if (decision === 'skip') {
      this.lastSkipped = { xid: ddl.xid, statement: ddl.statement };
      await applier.runInOrder(async (client) => {
        await recordDdl(client, migration, ddl.id, ddl.statement, 'skipped', `skipped on resume (cdc.ddl "${mode}"): applied by hand or left out`);
        await recordEvent(client, migration, 'warn', `Schema change skipped on resume, as applied by hand: ${ddl.statement}`);
      });
      return;
    }
    if (decision === 'stop') {
      const why = mode === 'error' ? 'cdc.ddl is "error": schema changes on the source stop replication' : 'cdc.ddl is "pause"';
      const next =
        mode === 'error'
          ? `Set cdc.ddl to "replicate" to have pgferry apply it, or apply it to the target by hand and set cdc.ddl to "pause" (the statement is then skipped); ${RESUME}.`
          : `Apply it to the target by hand if the target needs it, ${RESUME}: the statement is then skipped.`;
      return this.stop(applier, ddl, 'paused', mode === 'error' ? REJECTED : 'cdc.ddl is "pause"', `Replication stopped at a schema change on the source (${why}): ${ddl.statement}\n${next}`);
    }
    await this.run(ddl, ordinal, applier, decision === 'retry' ? prior : undefined);
  }

  private async run(ddl: CapturedDdl, ordinal: number, applier: Applier, failedBefore: DdlRecord | undefined): Promise<void> {
    const { migration, publicationName } = this.options;
    const runnable: ReturnType<typeof runnableStatement> = this.options.renamed
      ? { reason: "the target's objects have the names the spec's mapping gives them, and the statement names the source's" }
      : runnableStatement(ddl, ordinal);
    if ('reason' in runnable) {
      return this.stop(applier, ddl, 'paused', runnable.reason, `Replication stopped at a schema change on the source that pgferry cannot apply as it is (${runnable.reason}): ${ddl.statement}\nApply the change to the target by hand, ${RESUME}: the statement is then skipped.`);
    }
    const created = ddl.commandTag === 'CREATE TABLE' && ddl.objects.some((o) => o.type === 'table' && !o.partition && isNewSelected(this.options.selection, o));
    if (created && !ddl.published.includes(publicationName)) {
      const why = ddl.publishError ?? `the table is not in publication ${publicationName}`;
      return this.stop(applier, ddl, 'paused', why, `A table was created on the source, but could not join publication ${publicationName} (${why}): ${ddl.statement}\nCreate the table on the target, add it to the publication and copy the rows it has, ${RESUME}: the statement is then skipped.`);
    }
    let failure: unknown;
    const outcome = await applier.runInOrder(async (client) => {
      const ran = await runStatement(client, runnable.statement, ddl.searchPath);
      if (ran === true) {
        await recordDdl(client, migration, ddl.id, ddl.statement, 'applied');
        await recordEvent(client, migration, 'info', `Schema change applied: ${runnable.statement}`);
        return 'applied';
      }
      if (!failedBefore && this.builtByPostData(ran)) {
        await recordDdl(client, migration, ddl.id, ddl.statement, 'applied', `already made by post-data: ${messageOf(ran)}`);
        await recordEvent(client, migration, 'info', `Schema change already made by post-data, which read the source after it: ${runnable.statement}`);
        return 'applied';
      }
      if (failedBefore && appliedByHand(ran, failedBefore)) {
        await recordDdl(client, migration, ddl.id, ddl.statement, 'applied', `already on the target: ${messageOf(ran)}`);
        await recordEvent(client, migration, 'warn', `Schema change found already applied on the target (${messageOf(ran)}): ${runnable.statement}`);
        return 'applied';
      }
      failure = ran;
      return 'failed';
    });
    if (outcome === 'applied') return;
    const e = failure as { code?: string };
    return this.stop(applier, ddl, 'failed', `${e.code ?? ''}: ${messageOf(failure)}`, `Replication stopped: the schema change from the source failed on the target: ${messageOf(failure)}\nStatement: ${runnable.statement}\nFix the target so that it can run (or apply the change by hand), ${RESUME}: it runs again, and counts as applied if the target already has the change.`, failure);
  }

  /**
   * Post-data read the source's definitions after this change committed (the full load was
   * running): an "already exists" or "does not exist" then means post-data built the result.
   */
  private builtByPostData(error: unknown): boolean {
    const code = (error as { code?: string }).code ?? '';
    const { postDataLsn } = this.options;
    return (ALREADY_EXISTS.has(code) || DOES_NOT_EXIST.has(code)) && postDataLsn !== undefined && this.options.transaction.commitLsn < parseLsn(postDataLsn);
  }

  private async stop(applier: Applier, ddl: CapturedDdl, status: 'paused' | 'failed', detail: string, message: string, cause?: unknown): Promise<never> {
    if (applier.pendingTransactions > 0) throw new FlushBeforeDdl(formatLsn(this.options.transaction.commitLsn));
    await recordDdl(this.options.control, this.options.migration, ddl.id, ddl.statement, status, detail);
    throw new DdlNotAppliedError(message, ddl.id, ddl.statement, cause === undefined ? undefined : { cause });
  }
}

const textOf = (value: TupleValue | undefined) => (typeof value === 'string' ? value : null);

const isNewSelected = (selection: MigrationSpec['objects'], o: { table: { schema: string; name: string } | null }) => o.table !== null && isSelected(selection, o.table);

/** The retried statement failed because the target already has the change. */
function appliedByHand(error: unknown, before: DdlRecord): boolean {
  const code = (error as { code?: string }).code ?? '';
  if (ALREADY_EXISTS.has(code)) return true;
  return DOES_NOT_EXIST.has(code) && !(before.detail ?? '').startsWith(`${code}:`);
}

/**
 * Runs the statement under the source session's search_path, in a savepoint: true, or the
 * database error it failed with (the transaction stays usable). A lost connection or a lock
 * timeout is no error of the statement: it is thrown, and replication resumes as usual.
 */
async function runStatement(client: pg.ClientBase, statement: string, searchPath: string): Promise<true | unknown> {
  const { rows } = await client.query<{ path: string }>("SELECT current_setting('search_path') AS path");
  await client.query('SAVEPOINT pgferry_ddl');
  try {
    await client.query("SELECT set_config('search_path', $1, true)", [searchPath]);
    await client.query(statement);
    await client.query('RELEASE SAVEPOINT pgferry_ddl');
    return true;
  } catch (error) {
    const code = (error as { code?: string }).code;
    if (typeof code !== 'string' || isTransient(error) || /^(08|57P0|40001|40P01|55P03)/.test(code)) throw error;
    await client.query('ROLLBACK TO SAVEPOINT pgferry_ddl');
    return error;
  } finally {
    await client.query("SELECT set_config('search_path', $1, true)", [rows[0]!.path]).catch(() => undefined);
  }
}

/** Whether the target has the objects of a change outside any selected table (relations only; others are assumed to be there). */
async function objectsExist(client: pg.ClientBase, ddl: CapturedDdl): Promise<boolean> {
  const relations = ddl.objects.filter((o) => ['index', 'sequence', 'view', 'materialized view', 'table'].includes(o.type)).map((o) => o.identity);
  if (relations.length < ddl.objects.length) return true;
  const { rows } = await client.query<{ found: boolean }>('SELECT bool_or(to_regclass(r) IS NOT NULL) AS found FROM unnest($1::text[]) r', [relations]);
  return Boolean(rows[0]?.found);
}

/**
 * The check after the drain of a fenced cutover: the stream is read past the drain point until
 * the fence is certainly in force (docs/architecture.md, "Cutover and the fence").
 *
 * The fence refuses writes from the moment it is committed, but some writes pass it: sessions
 * with session_replication_role = replica (a subscription's apply worker, a tool that sets it),
 * and transactions of the sessions the fence leaves running (pgferry's own, background workers)
 * that commit after the drain point. Such a change is past the drain LSN: without this check it
 * would be lost with the slot. So once the stream has processed everything up to the drain LSN,
 * a pass:
 * 1. waits until every transaction of the database that held a transaction id when the pass
 *    began has ended (at most MAX_WAIT_MS), so nothing that began before it can commit later;
 * 2. emits a marker on the source (a synchronously committed logical message) and reads the
 *    stream on to it.
 * Every row change the stream hands to the applier with a commit LSN past the drain LSN is
 * applied as usual (never dropped), and recorded loudly: an event naming tables and keys, and
 * rows in pgferry.late_changes for the report. The drain completes once a pass finds none; after
 * MAX_PASSES passes that all found some, the cutover fails (writes keep passing the fence).
 */
import type pg from 'pg';
import { recordEvent } from '../control/events.js';
import { recordLateChanges, type LateChange } from '../control/late-changes.js';
import { markDrainPoint } from '../cutover/index.js';
import { PgferryError } from '../errors.js';
import { sleep } from '../sql.js';
import { formatLsn, parseLsn, UNCHANGED_TOAST, type PgoutputMessage, type RelationMessage, type TupleValue } from './pgoutput.js';
import type { StreamPosition } from './position.js';

type ChangeMessage = Extract<PgoutputMessage, { tag: 'insert' | 'update' | 'delete' | 'truncate' }>;

/** A committed source transaction's row changes, per table; key texts are made only when reported. */
interface TransactionChanges {
  commitLsn: bigint;
  tables: Map<number, { relation: RelationMessage | undefined; rows: number; samples: ChangeMessage[] }>;
  reported: boolean;
}

/** Recent transactions kept in memory: those past the drain point are few, unless the fence leaks badly. */
const RECENT_TRANSACTIONS = 1000;
/** Changes kept per table and transaction to name their keys. */
const SAMPLES = 5;

/**
 * Watches what the stream hands to the applier (after the filters) and keeps the row changes of
 * the last RECENT_TRANSACTIONS committed transactions, so the changes committed after the drain
 * LSN can be named once the drain LSN is known.
 */
export class LateChangeWatch {
  private readonly relations = new Map<number, RelationMessage>();
  private current: TransactionChanges | undefined;
  /** Transactions streamed while in progress, by top-level xid. */
  private readonly streamed = new Map<number, TransactionChanges>();
  private streamedXid: number | undefined;
  private recent: TransactionChanges[] = [];
  /** The largest commit LSN of a transaction no longer kept. */
  private forgottenUpTo = 0n;
  private forgottenReported = 0n;

  observe(message: PgoutputMessage): void {
    switch (message.tag) {
      case 'relation':
        this.relations.set(message.relationId, message);
        return;
      case 'begin':
        this.current = undefined;
        return;
      case 'stream-start':
        this.streamedXid = message.xid;
        return;
      case 'stream-stop':
        this.streamedXid = undefined;
        return;
      case 'stream-abort':
        if (message.subxid === message.xid) this.streamed.delete(message.xid);
        return;
      case 'commit':
        this.committed(this.current, message.commitLsn);
        this.current = undefined;
        return;
      case 'stream-commit':
        this.committed(this.streamed.get(message.xid), message.commitLsn);
        this.streamed.delete(message.xid);
        return;
      case 'insert':
      case 'update':
      case 'delete':
        this.note(message, [message.relationId]);
        return;
      case 'truncate':
        this.note(message, message.relationIds);
        return;
      default:
        return;
    }
  }

  private note(message: ChangeMessage, relationIds: number[]): void {
    let transaction: TransactionChanges;
    if (this.streamedXid !== undefined) {
      const xid = this.streamedXid;
      transaction = this.streamed.get(xid) ?? { commitLsn: 0n, tables: new Map(), reported: false };
      this.streamed.set(xid, transaction);
    } else {
      transaction = this.current ??= { commitLsn: 0n, tables: new Map(), reported: false };
    }
    for (const relationId of relationIds) {
      let table = transaction.tables.get(relationId);
      if (!table) transaction.tables.set(relationId, (table = { relation: this.relations.get(relationId), rows: 0, samples: [] }));
      table.rows++;
      if (table.samples.length < SAMPLES) table.samples.push(message);
    }
  }

  private committed(transaction: TransactionChanges | undefined, commitLsn: string): void {
    if (!transaction) return;
    transaction.commitLsn = parseLsn(commitLsn);
    this.recent.push(transaction);
    if (this.recent.length > 2 * RECENT_TRANSACTIONS) {
      const forgotten = this.recent.splice(0, this.recent.length - RECENT_TRANSACTIONS);
      for (const t of forgotten) if (t.commitLsn > this.forgottenUpTo) this.forgottenUpTo = t.commitLsn;
    }
  }

  /**
   * The changes committed after `drainLsn` not reported yet (marked reported now), and whether
   * some such transactions were already forgotten (more than RECENT_TRANSACTIONS of them).
   */
  takeAfter(drainLsn: bigint): { changes: LateChange[]; forgotten: boolean } {
    const changes: LateChange[] = [];
    for (const transaction of this.recent) {
      if (transaction.reported || transaction.commitLsn <= drainLsn) continue;
      transaction.reported = true;
      for (const [relationId, table] of transaction.tables) {
        changes.push({
          commitLsn: formatLsn(transaction.commitLsn),
          schema: table.relation?.schema ?? '?',
          table: table.relation?.name ?? `relation ${relationId}`,
          rows: table.rows,
          keys: table.samples.map((sample) => describeChange(sample, table.relation)),
        });
      }
    }
    const forgotten = this.forgottenUpTo > drainLsn && this.forgottenUpTo > this.forgottenReported;
    if (forgotten) this.forgottenReported = this.forgottenUpTo;
    return { changes, forgotten };
  }
}

const MAX_VALUE_LENGTH = 40;

function valueText(value: TupleValue | undefined): string {
  if (value === undefined || value === null) return 'NULL';
  if (value === UNCHANGED_TOAST) return '(unchanged)';
  const text = typeof value === 'string' ? value : `\\x${value.toString('hex')}`;
  return text.length > MAX_VALUE_LENGTH ? `${text.slice(0, MAX_VALUE_LENGTH)}…` : text;
}

/** `update id=7`: the operation and the row's key (its replica identity; without one, its first columns). */
function describeChange(message: ChangeMessage, relation: RelationMessage | undefined): string {
  if (message.tag === 'truncate') return 'truncate';
  const tuple = message.tag === 'insert' ? message.newTuple : (message.oldKey ?? message.oldTuple ?? (message.tag === 'update' ? message.newTuple : undefined));
  const columns = relation?.columns.map((column, index) => ({ ...column, index })) ?? [];
  const key = columns.filter((c) => c.partOfKey);
  const shown = (key.length > 0 ? key : columns.slice(0, 3)).map((c) => `${c.name}=${valueText(tuple?.[c.index])}`);
  return [message.tag, ...shown].join(' ');
}

/** The cutover failed: writes keep passing the fence. */
export class FenceLeakError extends PgferryError {
  constructor(message: string) {
    super('pgferry.FenceLeak', message);
  }
}

/** A pass waits at most this long for the transactions open when it began. */
const MAX_WAIT_MS = 60_000;
/** Passes that found late changes before the cutover fails. */
const MAX_PASSES = 10;
/** Within one heartbeat, how long a pass waits for the stream to reach its marker. */
const MARKER_WAIT_MS = 1_000;

export interface FenceCheckDeps {
  migration: string;
  /** The control schema (target) and the source. */
  control: pg.Client;
  source: pg.Client;
  position: StreamPosition;
  watch: LateChangeWatch;
  requestKeepalive: () => void;
  log: (message: string) => void;
}

type Pass = { stage: 'waiting'; open: Set<string>; since: number } | { stage: 'reading'; marker: bigint };

/** The passes after the drain of a fenced cutover; `step` is called by the heartbeat once the drain LSN is processed. */
export class FenceCheck {
  private pass: Pass | undefined;
  private lateInPass = 0;
  private passes = 0;

  constructor(private readonly deps: FenceCheckDeps) {}

  /** 'drained' once a pass read to its marker and found no change after the drain LSN; undefined to go on. */
  async step(drainLsn: bigint): Promise<'drained' | undefined> {
    await this.recordLate(drainLsn);
    this.pass ??= { stage: 'waiting', open: await this.openTransactions(), since: Date.now() };
    if (this.pass.stage === 'waiting') {
      const { open, since } = this.pass;
      const still = [...(await this.openTransactions())].filter((t) => open.has(t));
      if (still.length > 0 && Date.now() - since < MAX_WAIT_MS) return undefined;
      if (still.length > 0) {
        await recordEvent(
          this.deps.control,
          this.deps.migration,
          'warn',
          `cutover: ${still.length} source transaction(s) (pid:xid ${still.join(', ')}) open since before the fence check did not end within ${MAX_WAIT_MS / 1000} s; the check goes on without them`,
        );
      }
      const marker = await markDrainPoint(this.deps.source, 'fence-check');
      this.pass = { stage: 'reading', marker: parseLsn(marker) };
    }
    const { marker } = this.pass;
    const deadline = Date.now() + MARKER_WAIT_MS;
    while (this.deps.position.processed < marker && Date.now() < deadline) {
      this.deps.requestKeepalive();
      await sleep(20);
    }
    if (this.deps.position.processed < marker) return undefined;
    await this.recordLate(drainLsn);
    const found = this.lateInPass;
    this.pass = undefined;
    this.lateInPass = 0;
    if (found === 0) return 'drained';
    this.passes++;
    if (this.passes >= MAX_PASSES) {
      throw new FenceLeakError(
        `Cutover of ${this.deps.migration}: ${this.passes} passes past the drain point each found row changes committed on the source after the fence ` +
          '(applied to the target, listed in pgferry.late_changes). Something keeps writing past the fence, with session_replication_role = replica or in a session named pgferry*: stop it, then resume.',
      );
    }
    return undefined;
  }

  /** Transactions of the source database holding a transaction id, as `pid:xid`. */
  private async openTransactions(): Promise<Set<string>> {
    const { rows } = await this.deps.source.query<{ id: string }>(
      `SELECT pid::text || ':' || backend_xid::text AS id FROM pg_stat_activity
        WHERE datname = current_database() AND backend_xid IS NOT NULL AND pid <> pg_backend_pid()`,
    );
    return new Set(rows.map((r) => r.id));
  }

  /** Records the late changes the stream handed over since the last call: control rows, an event, the log. */
  private async recordLate(drainLsn: bigint): Promise<void> {
    const { changes, forgotten } = this.deps.watch.takeAfter(drainLsn);
    if (changes.length === 0 && !forgotten) return;
    this.lateInPass += changes.length + (forgotten ? 1 : 0);
    const { control, migration } = this.deps;
    await recordLateChanges(control, migration, changes);
    const listed = changes
      .slice(0, 20)
      .map((c) => `${c.schema}.${c.table} at ${c.commitLsn} (${c.rows} row change(s): ${c.keys.join('; ')}${c.rows > c.keys.length ? '; …' : ''})`);
    const message =
      `cutover: ${changes.length} table change(s) committed on the source after the drain point ${formatLsn(drainLsn)}, past the fence, were applied to the target` +
      `${forgotten ? ' (more transactions than could be listed: some are not named)' : ''}: ${listed.join(', ')}${changes.length > 20 ? ', …' : ''}. ` +
      'Something wrote past the fence (session_replication_role = replica, or a session named pgferry*): see pgferry.late_changes.';
    await recordEvent(control, migration, 'warn', message);
    this.deps.log(message);
  }
}

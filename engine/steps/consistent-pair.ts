/**
 * Consistent pairs of snapshots for a comparison while changes flow (issue 14). For each pair of
 * sessions the source's snapshot is taken first, and the target's once the applier has committed
 * every source transaction that snapshot sees. The two snapshots then differ only in rows the applier
 * changed in between; it recorded their keys (control/changed-keys.ts) with commit LSNs at or
 * after `from`, the target's applied LSN read before the source's snapshot. Those rows are left
 * out on both sides and stay due for the next comparison; any other difference is lasting, so a
 * hot table is verified in one pass instead of being rechecked until it happens to hold still.
 */
import type pg from 'pg';
import type { CompareTarget } from '../compare/index.js';
import { readAppliedLsn, readChangesAt, readReplicationStatus, targetHolds } from '../control/index.js';
import type { TableRef } from '../catalog/tables.js';
import type { MigrationSpec } from '../spec/index.js';
import { qualified, sleep } from '../sql.js';

const REACH_WAIT_MS = 60_000;
const REACH_POLL_MS = 25;

/** One table's pair. */
export interface Pair {
  /** The LSN from which the comparison verifies the table. */
  from: string;
  /** Keys (in the compared key's column order) of rows changed between the snapshots; undefined when they cannot be named (a change without a usable key, or keys in other columns). */
  inFlight: (string | null)[][] | undefined;
  /** A change without a usable key (or a bulk one) was in flight: differences cannot be told from it, and the table stays due as a whole. */
  wholeSince: boolean;
  /** Keys recorded as changed before `from` (when asked for): the rows an incremental comparison checks. */
  due: (string | null)[][];
}

export interface PairContext {
  migration: string;
  spec: MigrationSpec;
  /** A target session outside the compared ones, for the applier's progress. */
  control: pg.Client;
  log: (message: string) => void;
}

export class SnapshotPairs {
  /** Each compared table's pair, by `schema.table`. */
  readonly pairs = new Map<string, Pair>();
  /** The pair each target session is in (its source session's snapshot came first). */
  private readonly sessions = new WeakMap<pg.Client, { from: string }>();
  /** The control session is shared by the comparison's workers: one query at a time. */
  private controlQueue: Promise<unknown> = Promise.resolve();

  constructor(private readonly context: PairContext) {}

  /**
   * `table`'s pair on `source` and `target`: the sessions' consistent pair, begun by the first
   * table they compare (one wait for the applier per pair of sessions, not per table); `due`
   * also reads the keys changed before the pair (in the target's snapshot, so every key the
   * verification from `from` covers is among them).
   */
  async open(source: pg.Client, target: pg.Client, table: TableRef, keyColumns: string[] | null, { due }: { due: boolean }): Promise<Pair> {
    const { from } = this.sessions.get(target) ?? (await this.begin(source, target));
    const changes = await readChangesAt(target, this.context.migration, table, from, { before: due });
    const order = keyColumns && changes.keyColumns ? columnOrder(changes.keyColumns, keyColumns) : undefined;
    const nameable = !changes.wholeSince && (changes.since.length === 0 || order !== undefined);
    const pair: Pair = {
      from,
      inFlight: nameable ? changes.since.map((key) => order!.map((i) => key[i] ?? null)) : undefined,
      wholeSince: changes.wholeSince,
      due: changes.before,
    };
    this.pairs.set(qualified(table), pair);
    return pair;
  }

  private async begin(source: pg.Client, target: pg.Client): Promise<{ from: string }> {
    const { migration } = this.context;
    const from = (await this.onControl((control) => readAppliedLsn(control, migration))) ?? '0/0';
    await source.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
    // The insert position: a commit the snapshot sees is inserted, though perhaps not yet written (synchronous_commit off).
    const { rows } = await source.query<{ lsn: string }>('SELECT pg_current_wal_insert_lsn()::text AS lsn');
    await this.reach(rows[0]!.lsn);
    await target.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
    const session = { from };
    this.sessions.set(target, session);
    return session;
  }

  /** For compareTables: a pair per table, in its primary key's column order. */
  readonly forTables = async (source: pg.Client, target: pg.Client, table: CompareTarget): Promise<(string | null)[][] | undefined> =>
    (await this.open(source, target, table.source, table.primaryKey, { due: false })).inFlight;

  private onControl<T>(query: (control: pg.Client) => Promise<T>): Promise<T> {
    const result = this.controlQueue.then(() => query(this.context.control));
    this.controlQueue = result.catch(() => undefined);
    return result;
  }

  /**
   * Waits until the target holds every source commit up to `lsn`. When the streamer is silent or
   * too slow it compares anyway: a match still proves the rows equal, and a difference leaves the
   * table unverified, for the comparison after cutover.
   */
  private async reach(lsn: string): Promise<void> {
    const { migration, spec, log } = this.context;
    const deadline = Date.now() + REACH_WAIT_MS;
    let nextHealthCheck = Date.now() + 1000;
    while (Date.now() < deadline) {
      if (await this.onControl((control) => targetHolds(control, migration, lsn))) return;
      if (Date.now() >= nextHealthCheck) {
        nextHealthCheck = Date.now() + 1000;
        const status = await this.onControl((control) => readReplicationStatus(control, migration));
        if ((status?.heartbeatAgeSeconds ?? Infinity) > spec.cdc.heartbeatTimeoutSeconds) {
          log('the streamer is not reporting; comparing without waiting for it');
          return;
        }
      }
      await sleep(REACH_POLL_MS);
    }
    log(`the target did not reach ${lsn} within ${REACH_WAIT_MS / 1000} s; comparing anyway`);
  }
}

/** For each of `wanted`, its index in `recorded`; undefined unless both name the same columns. */
function columnOrder(recorded: string[], wanted: string[]): number[] | undefined {
  if (recorded.length !== wanted.length) return undefined;
  const order = wanted.map((column) => recorded.indexOf(column));
  return order.every((i) => i >= 0) ? order : undefined;
}

/**
 * One streamer per migration: a session advisory lock on the target that the applying streamer
 * holds, taken from a streamer the workflow gave up on if need be, and the end of any
 * walsender still on the slot once the lock is ours.
 */
import type pg from 'pg';
import { sleep } from '../sql.js';

/** Key of the session advisory lock that makes one streamer per migration apply at a time. */
const LOCK_CLASS = 0x70676672; // 'pgfr'

/** Takes the migration's apply lock on `target` (this session holds it until it ends); false when another streamer keeps it. */
export async function takeApplyLock(target: pg.Client, migration: string, log: (m: string) => void): Promise<boolean> {
  for (let attempt = 0; ; attempt++) {
    const { rows } = await target.query<{ ok: boolean }>('SELECT pg_try_advisory_lock($1, hashtext($2)) AS ok', [LOCK_CLASS, migration]);
    if (rows[0]!.ok) return true;
    if (attempt >= 50) return false;
    // A streamer the workflow gave up on (stale heartbeat) may still hold its session: end it.
    const ended = await endApplier(target, migration);
    if (attempt === 0 && ended) log('ended the session of an earlier streamer of this migration');
    await sleep(200);
  }
}

/** Holding the apply lock makes this the migration's streamer: a walsender still on the slot is a stale one's. */
export async function endStaleWalsender(source: pg.Client, slotName: string): Promise<void> {
  await source.query('SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots WHERE slot_name = $1 AND active_pid IS NOT NULL', [slotName]);
}

/** The sessions (other than this one) holding the migration's apply lock in this database; $1 the lock class, $2 the migration. */
const APPLIER_SESSIONS = `FROM pg_locks
  WHERE locktype = 'advisory' AND granted AND classid = $1::int::oid AND objid = hashtext($2)::oid AND objsubid = 2
    AND database = (SELECT oid FROM pg_database WHERE datname = current_database()) AND pid <> pg_backend_pid()`;

/** Waits up to `timeoutMs` for the session holding the migration's apply lock on `target` to end, then ends it; how many were ended. */
export async function stopApplier(target: pg.Client, migration: string, timeoutMs: number): Promise<number> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const { rowCount } = await target.query(`SELECT 1 ${APPLIER_SESSIONS}`, [LOCK_CLASS, migration]);
    if (!rowCount) return 0;
    await sleep(200);
  }
  return endApplier(target, migration);
}

/** Ends the session holding the migration's apply lock on `target` (another than this one); how many were ended. */
export async function endApplier(target: pg.Client, migration: string): Promise<number> {
  const ended = await target.query(`SELECT pg_terminate_backend(pid) ${APPLIER_SESSIONS}`, [LOCK_CLASS, migration]);
  return ended.rowCount ?? 0;
}

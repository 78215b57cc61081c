/**
 * Precheck of reverse replication (cutover.reverse, engine/cutover/reverse.ts): at cutover the
 * target gets a logical slot, and both appliers mark their transactions with replication origins.
 * Found here rather than at cutover, when the source is already fenced.
 */
import type pg from 'pg';
import type { CheckResult } from './index.js';

/**
 * Whether `client`'s user may use replication origins: EXECUTE on the functions pgferry calls
 * (superusers have it); before PostgreSQL 14 those functions are for superusers only, whatever is granted.
 */
async function mayUseOrigins(client: pg.Client): Promise<boolean> {
  const { rows } = await client.query<{ allowed: boolean }>(
    `SELECT CASE WHEN current_setting('server_version_num')::int < 140000 THEN (SELECT rolsuper FROM pg_roles WHERE rolname = current_user)
                 ELSE (SELECT bool_and(has_function_privilege(current_user, f, 'EXECUTE'))
                         FROM unnest(ARRAY['pg_replication_origin_create(text)', 'pg_replication_origin_session_setup(text)', 'pg_replication_origin_drop(text)']) AS f)
            END AS allowed`,
  );
  return Boolean(rows[0]?.allowed);
}

const ORIGIN_GRANT = (user: string) =>
  `GRANT EXECUTE ON FUNCTION pg_replication_origin_create(text), pg_replication_origin_session_setup(text), pg_replication_origin_drop(text) TO ${user}; (PostgreSQL 13 needs a superuser)`;

/** The reverse checks: origins on both sides; wal_level, replication privilege and a free slot on the target. */
export async function checkReverse(source: { client: pg.Client; user: string }, target: { client: pg.Client; user: string }): Promise<CheckResult[]> {
  const checks: CheckResult[] = [];
  for (const [side, facts] of [['source', source], ['target', target]] as const) {
    const id = `${side}.replication_origins`;
    checks.push(
      (await mayUseOrigins(facts.client))
        ? { id, status: 'pass', message: `${facts.user} on the ${side} may mark applied transactions with a replication origin (cutover.reverse: no change loops).` }
        : {
            id,
            status: 'fail',
            message: `User ${facts.user} on the ${side} may not use replication origins, which cutover.reverse needs so that applied changes are not replicated back.`,
            remediation: ORIGIN_GRANT(facts.user),
          },
    );
  }
  const { rows } = await target.client.query<{ wal_level: string; allowed: boolean; free: number }>(
    `SELECT current_setting('wal_level') AS wal_level,
            (SELECT r.rolsuper OR r.rolreplication
                    OR coalesce(pg_has_role(r.oid, (SELECT oid FROM pg_roles WHERE rolname = 'rds_replication'), 'member'), false)
               FROM pg_roles r WHERE r.rolname = current_user) AS allowed,
            current_setting('max_replication_slots')::int - (SELECT count(*)::int FROM pg_replication_slots) AS free`,
  );
  const { wal_level: walLevel, allowed, free } = rows[0]!;
  const id = 'target.reverse_slot';
  const problems = [
    walLevel !== 'logical' && `wal_level is "${walLevel}" (needs "logical")`,
    !allowed && `user ${target.user} may not create replication slots`,
    free < 1 && 'no replication slot is free',
  ].filter(Boolean);
  checks.push(
    problems.length === 0
      ? { id, status: 'pass', message: 'The target can hold the reverse replication slot armed at cutover.' }
      : {
          id,
          status: 'fail',
          message: `cutover.reverse arms a logical replication slot on the target at cutover, but on the target ${problems.join(', ')}.`,
          remediation:
            `Set wal_level = logical on the target (rds.logical_replication = 1 on RDS/Aurora) and restart it; ALTER ROLE ${target.user} REPLICATION (GRANT rds_replication on RDS); ` +
            'keep a replication slot free (max_replication_slots); or set cutover.reverse to false.',
        },
  );
  return checks;
}

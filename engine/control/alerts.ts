/**
 * `pgferry.alerts`: the last alert of each kind a migration sent to its alert topic
 * (engine/alerts/), so that a condition is alerted once per episode, not at every poll. Claims
 * are single statements: two steps that see the same condition at once send it once.
 */
import type pg from 'pg';
import { controlTableExists } from './schema.js';

export interface AlertRow {
  kind: string;
  episode: string;
  active: boolean;
  subject: string;
  raisedAt: Date;
  resolvedAt: Date | null;
}

/**
 * Marks the alert of `kind` raised for `episode`; true when it was not already (so the caller
 * sends it), false while the same episode is still active. A control schema from before alerts
 * (or a migration not registered) claims nothing.
 */
export async function claimAlert(control: pg.ClientBase, migration: string, kind: string, episode: string, subject: string): Promise<boolean> {
  if (!(await controlTableExists(control, 'alerts'))) return false;
  const { rowCount } = await control.query(
    `INSERT INTO pgferry.alerts AS a (migration, kind, episode, active, subject)
     SELECT $1, $2, $3, true, $4 WHERE EXISTS (SELECT 1 FROM pgferry.migrations WHERE name = $1)
     ON CONFLICT (migration, kind) DO UPDATE
        SET episode = EXCLUDED.episode, active = true, subject = EXCLUDED.subject, raised_at = now(), resolved_at = NULL
      WHERE NOT a.active OR a.episode IS DISTINCT FROM EXCLUDED.episode`,
    [migration, kind, episode, subject],
  );
  return rowCount === 1;
}

/** Marks the active alert of `kind` resolved; true when it was active (so the caller sends the resolution). */
export async function claimAlertResolution(control: pg.ClientBase, migration: string, kind: string): Promise<boolean> {
  if (!(await controlTableExists(control, 'alerts'))) return false;
  const { rowCount } = await control.query(
    'UPDATE pgferry.alerts SET active = false, resolved_at = now() WHERE migration = $1 AND kind = $2 AND active',
    [migration, kind],
  );
  return rowCount === 1;
}

/** The migration's alerts, as last sent. */
export async function readAlerts(control: pg.ClientBase, migration: string): Promise<AlertRow[]> {
  if (!(await controlTableExists(control, 'alerts'))) return [];
  const { rows } = await control.query(
    'SELECT kind, episode, active, subject, raised_at, resolved_at FROM pgferry.alerts WHERE migration = $1 ORDER BY kind',
    [migration],
  );
  return rows.map((row) => ({
    kind: row.kind,
    episode: row.episode,
    active: row.active,
    subject: row.subject,
    raisedAt: row.raised_at,
    resolvedAt: row.resolved_at,
  }));
}

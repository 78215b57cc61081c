/**
 * Live progress of a running migration, read from the target's control schema: during the
 * full load an overall bar and one bar per table being copied; with CDC a line of lag and rate.
 */
import type pg from 'pg';
import { readReplicationStatus } from '../engine/cdc/state.js';
import { formatReplicationLine, progressLines } from './format.js';
import type { Progress } from './progress.js';

const POLL_MS = 500;

const PROGRESS_SQL = `
SELECT t.source_schema || '.' || t.source_table AS table, t.estimated_bytes::float8 AS estimated,
       coalesce(sum(p.bytes_copied), 0)::float8 AS copied,
       count(u.id) FILTER (WHERE u.state = 'done')::int AS done, t.units_total AS units,
       bool_or(u.state = 'pending' AND p.attempt_started_at IS NOT NULL) AS running
  FROM pgferry.tables t
  JOIN pgferry.units u ON (u.migration, u.source_schema, u.source_table) = (t.migration, t.source_schema, t.source_table)
  JOIN pgferry.unit_progress p ON (p.migration, p.id) = (u.migration, u.id)
 WHERE t.migration = $1
 GROUP BY t.source_schema, t.source_table, t.estimated_bytes, t.units_total`;

/** Polls the load's progress and the CDC lag into `progress.detail` until stopped. */
export function watchMigration(connectTarget: () => Promise<pg.Client>, migration: string, progress: Progress): { stop(): Promise<void> } {
  let stopped = false;
  let client: pg.Client | undefined;
  const loop = (async () => {
    try {
      client = await connectTarget();
      while (!stopped) {
        const { rows } = await client.query(PROGRESS_SQL, [migration]).catch(() => ({ rows: [] }));
        const loading = rows.some((r) => r.done < r.units);
        const replication = await readReplicationStatus(client, migration).catch(() => undefined);
        const lines = [...(loading ? progressLines(rows) : []), ...(replication ? [formatReplicationLine(replication)] : [])];
        if (!stopped) progress.detail(lines);
        await new Promise((r) => setTimeout(r, POLL_MS));
      }
    } catch {
      // Progress is a convenience: a target we cannot poll only means no bars.
    } finally {
      await client?.end().catch(() => undefined);
    }
  })();
  return {
    async stop() {
      stopped = true;
      await loop;
      progress.detail([]);
    },
  };
}

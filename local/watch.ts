/**
 * Live progress of a running migration, read from the target's control schema: during the
 * full load an overall bar and one bar per table being copied; with CDC a line of lag and rate.
 */
import type pg from 'pg';
import { readProgress, type MigrationProgress } from '../engine/control/index.js';
import { formatBytes } from '../engine/report.js';
import { qualified, sleep } from '../engine/sql.js';
import { formatReplicationLine } from '../engine/status.js';
import type { Progress } from './progress.js';

const POLL_MS = 500;
const MAX_TABLE_LINES = 8;

export function bar(fraction: number, width = 24): string {
  const filled = Math.round(Math.max(0, Math.min(1, fraction)) * width);
  return `[${'█'.repeat(filled)}${'░'.repeat(width - filled)}]`;
}

export function progressLines(rows: { table: string; estimated: number; copied: number; done: number; units: number; running: boolean }[]): string[] {
  if (rows.length === 0) return [];
  const estimated = rows.reduce((s, r) => s + Math.max(r.estimated, r.copied), 0);
  const copied = rows.reduce((s, r) => s + r.copied, 0);
  const tablesDone = rows.filter((r) => r.done === r.units).length;
  const overall = `${bar(estimated > 0 ? copied / estimated : tablesDone / rows.length)} ${formatBytes(copied)} / ~${formatBytes(estimated)} · ${tablesDone}/${rows.length} tables`;
  const active = rows
    .filter((r) => r.running && r.done < r.units)
    .slice(0, MAX_TABLE_LINES)
    .map((r) => `    ${bar(r.estimated > 0 ? r.copied / r.estimated : 0, 16)} ${r.table} ${formatBytes(r.copied)}`);
  return [overall, ...active];
}

/** What the watch shows of a migration's progress: the load's bars while units are left, then the CDC line. */
export function progressDetail(progress: MigrationProgress | undefined): string[] {
  const rows = (progress?.tables ?? [])
    .filter((t) => t.units > 0)
    .map((t) => ({ table: qualified(t.source), estimated: t.estimatedBytes, copied: t.bytesSoFar, done: t.unitsDone, units: t.units, running: t.copying }));
  const loading = rows.some((r) => r.done < r.units);
  const replication = progress?.replication;
  return [...(loading ? progressLines(rows) : []), ...(replication ? [formatReplicationLine(replication)] : [])];
}

/** Polls the load's progress and the CDC lag into `progress.detail` until stopped. */
export function watchMigration(connectTarget: () => Promise<pg.Client>, migration: string, progress: Progress): { stop(): Promise<void> } {
  let stopped = false;
  let client: pg.Client | undefined;
  const loop = (async () => {
    try {
      client = await connectTarget();
      while (!stopped) {
        const lines = progressDetail(await readProgress(client, migration).catch(() => undefined));
        if (!stopped) progress.detail(lines);
        await sleep(POLL_MS);
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

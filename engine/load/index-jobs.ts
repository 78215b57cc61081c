/**
 * Index builds overlapped with the load: as soon as every unit of a plain table is copied, the
 * worker that copied the last one builds the table's primary key, indexes and single-table
 * constraints, then analyzes it, while the other workers go on copying. Each job is one target transaction that
 * also marks it done, so a job is built once; post-data builds whatever is left.
 */
import type pg from 'pg';
import type { TableRef } from '../catalog/tables.js';
import { claimIndexJob, indexJobsReady, markIndexJobDone, recordIndexJobFailure } from '../control/index.js';
import { messageOf, withTransaction } from '../sql.js';

const ALREADY_EXISTS = new Set(['42P07', '42710']);

/** Runs the pending jobs of `table` if all its units are copied; returns how many it built. */
export async function runReadyIndexJobs(client: pg.Client, migration: string, table: TableRef): Promise<number> {
  if (!(await indexJobsReady(client, migration, table))) return 0;
  let built = 0;
  for (;;) {
    let job: { id: number; statements: string[] } | undefined;
    try {
      const ran = await withTransaction(client, async () => {
        job = await claimIndexJob(client, migration, table);
        if (!job) return false;
        await client.query("SET LOCAL maintenance_work_mem = '256MB'");
        for (const statement of job.statements) await client.query(statement);
        await markIndexJobDone(client, migration, job.id);
        return true;
      });
      if (!ran) return built;
      built++;
    } catch (error) {
      // The claim itself failed: there is no job to record it against.
      if (!job) throw error;
      const code = (error as { code?: string }).code ?? '';
      await recordIndexJobFailure(client, migration, job.id, ALREADY_EXISTS.has(code) ? 'existing' : 'failed', messageOf(error));
    }
  }
}

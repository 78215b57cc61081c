/**
 * Index builds overlapped with the load: as soon as every unit of a plain table is copied, the
 * worker that copied the last one builds the table's primary key, indexes and single-table
 * constraints, then analyzes it, while the other workers go on copying. Each job is one target transaction that
 * also marks it done, so a job is built once; post-data builds whatever is left.
 */
import type pg from 'pg';
import type { TableRef } from '../catalog/tables.js';
import type { TableJob } from '../schema/index.js';

const ALREADY_EXISTS = new Set(['42P07', '42710']);

export async function saveIndexJobs(target: pg.Client, migration: string, jobs: TableJob[]): Promise<void> {
  await target.query('DELETE FROM pgferry.index_jobs WHERE migration = $1', [migration]);
  if (jobs.length === 0) return;
  await target.query(
    `INSERT INTO pgferry.index_jobs (migration, id, table_schema, table_name, kind, identity, statements)
     SELECT $1, ord, s, n, k, i, string_to_array(q, E'\\x1f')
       FROM unnest($2::text[], $3::text[], $4::text[], $5::text[], $6::text[]) WITH ORDINALITY AS j(s, n, k, i, q, ord)`,
    [
      migration,
      jobs.map((j) => j.table.schema),
      jobs.map((j) => j.table.name),
      jobs.map((j) => j.kind),
      jobs.map((j) => j.identity),
      jobs.map((j) => j.sql.join('\x1f')),
    ],
  );
}

/** Runs the pending jobs of `table` if all its units are copied; returns how many it built. */
export async function runReadyIndexJobs(client: pg.Client, migration: string, table: TableRef): Promise<number> {
  const { rows: ready } = await client.query(
    `SELECT NOT EXISTS (SELECT 1 FROM pgferry.units WHERE migration = $1 AND source_schema = $2 AND source_table = $3 AND state <> 'done')
            AND EXISTS (SELECT 1 FROM pgferry.index_jobs WHERE migration = $1 AND table_schema = $2 AND table_name = $3 AND state = 'pending') AS ready`,
    [migration, table.schema, table.name],
  );
  if (!ready[0]?.ready) return 0;
  let built = 0;
  for (;;) {
    await client.query('BEGIN');
    const { rows } = await client.query<{ id: number; statements: string[] }>(
      `SELECT id, statements FROM pgferry.index_jobs j
        WHERE migration = $1 AND table_schema = $2 AND table_name = $3 AND state = 'pending'
          AND (kind <> 'analyze' OR NOT EXISTS (
                SELECT 1 FROM pgferry.index_jobs o
                 WHERE (o.migration, o.table_schema, o.table_name) = (j.migration, j.table_schema, j.table_name)
                   AND o.kind <> 'analyze' AND o.state = 'pending'))
        ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED`,
      [migration, table.schema, table.name],
    );
    const job = rows[0];
    if (!job) {
      await client.query('COMMIT');
      return built;
    }
    try {
      await client.query("SET LOCAL maintenance_work_mem = '256MB'");
      for (const statement of job.statements) await client.query(statement);
      await client.query(`UPDATE pgferry.index_jobs SET state = 'done' WHERE migration = $1 AND id = $2`, [migration, job.id]);
      await client.query('COMMIT');
      built++;
    } catch (error) {
      await client.query('ROLLBACK');
      const code = (error as { code?: string }).code ?? '';
      await client.query('UPDATE pgferry.index_jobs SET state = $3, error = $4 WHERE migration = $1 AND id = $2', [
        migration,
        job.id,
        ALREADY_EXISTS.has(code) ? 'existing' : 'failed',
        (error as Error).message,
      ]);
    }
  }
}

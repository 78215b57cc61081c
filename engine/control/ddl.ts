/** `pgferry.ddl_commands`: what became of each schema change captured on the source during CDC. */
import type pg from 'pg';

export type DdlStatus = 'applied' | 'skipped' | 'paused' | 'failed';

export interface DdlRecord {
  status: DdlStatus;
  detail: string | null;
}

export async function readDdlRecord(client: pg.ClientBase, migration: string, captureId: string): Promise<DdlRecord | undefined> {
  const { rows } = await client.query<DdlRecord>('SELECT status, detail FROM pgferry.ddl_commands WHERE migration = $1 AND capture_id = $2', [
    migration,
    captureId,
  ]);
  return rows[0];
}

export async function recordDdl(client: pg.ClientBase, migration: string, captureId: string, statement: string, status: DdlStatus, detail?: string): Promise<void> {
  await client.query(
    `INSERT INTO pgferry.ddl_commands (migration, capture_id, statement, status, detail) VALUES ($1, $2, $3, $4, $5)
     ON CONFLICT (migration, capture_id) DO UPDATE SET status = excluded.status, detail = excluded.detail, at = now()`,
    [migration, captureId, statement, status, detail ?? null],
  );
}

/** Every recorded change of a migration, oldest first. */
export async function listDdlRecords(client: pg.ClientBase, migration: string): Promise<(DdlRecord & { captureId: string; statement: string })[]> {
  const { rows } = await client.query<DdlRecord & { captureId: string; statement: string }>(
    'SELECT capture_id::text AS "captureId", statement, status, detail FROM pgferry.ddl_commands WHERE migration = $1 ORDER BY capture_id',
    [migration],
  );
  return rows;
}

/** Notes where the source's WAL was when post-data began reading its definitions (CDC modes; a no-op without replication). */
export async function recordPostDataLsn(client: pg.ClientBase, migration: string, lsn: string): Promise<void> {
  await client.query('UPDATE pgferry.replication SET post_data_source_lsn = $2::pg_lsn WHERE migration = $1', [migration, lsn]);
}

export async function readPostDataLsn(client: pg.ClientBase, migration: string): Promise<string | undefined> {
  const { rows } = await client.query<{ lsn: string | null }>('SELECT post_data_source_lsn::text AS lsn FROM pgferry.replication WHERE migration = $1', [migration]);
  return rows[0]?.lsn ?? undefined;
}

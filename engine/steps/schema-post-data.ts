/** SchemaPostData: indexes, constraints, foreign keys, triggers and ANALYZE, after the data is in. */
import type pg from 'pg';
import { setPhase, recordPostDataLsn, recordSchemaObjects } from '../control/index.js';
import { migratePostData } from '../schema/index.js';
import type { TaskStepContext } from './task.js';

export async function schemaPostDataStep({ migration, spec, connectSource, connectTarget, log }: TaskStepContext): Promise<void> {
  const control = await connectTarget();
  try {
    await setPhase(control, migration, 'post-data');
    await notePostDataStart(connectSource, control, migration);
    const result = await migratePostData(connectSource, connectTarget, spec, { parallelism: spec.fullLoad.parallelism });
    await recordSchemaObjects(control, migration, 'post-data', result.objects);
    log(`post-data done: ${result.objects.length} objects`);
  } finally {
    await control.end();
  }
}

/** Schema changes captured during CDC that committed before this are in what post-data builds (engine/cdc/ddl/apply.ts). */
async function notePostDataStart(connectSource: () => Promise<pg.Client>, control: pg.Client, migration: string): Promise<void> {
  const source = await connectSource();
  try {
    const { rows } = await source.query<{ lsn: string }>('SELECT pg_current_wal_insert_lsn()::text AS lsn');
    await recordPostDataLsn(control, migration, rows[0]!.lsn);
  } finally {
    await source.end().catch(() => undefined);
  }
}

/** SchemaPostData: indexes, constraints, foreign keys, triggers and ANALYZE, after the data is in. */
import { setPhase, recordSchemaObjects } from '../control/index.js';
import { migratePostData } from '../schema/index.js';
import type { TaskStepContext } from './task.js';

export async function schemaPostDataStep({ migration, spec, connectSource, connectTarget, log }: TaskStepContext): Promise<void> {
  const control = await connectTarget();
  try {
    await setPhase(control, migration, 'post-data');
    const result = await migratePostData(connectSource, connectTarget, spec, { parallelism: spec.fullLoad.parallelism });
    await recordSchemaObjects(control, migration, 'post-data', result.objects);
    log(`post-data done: ${result.objects.length} objects`);
  } finally {
    await control.end();
  }
}

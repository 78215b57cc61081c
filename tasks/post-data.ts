/** Schema post-data: indexes, constraints, foreign keys, triggers and ANALYZE, after the data is in. */
import { recordSchemaObjects, setPhase } from '../engine/control/index.js';
import { migratePostData } from '../engine/schema/index.js';
import { runTask } from './task.js';

await runTask('post-data', async ({ migration, spec, connectSource, connectTarget, log }) => {
  const control = await connectTarget();
  try {
    await setPhase(control, migration, 'post-data');
    const result = await migratePostData(connectSource, connectTarget, spec, { parallelism: spec.fullLoad.parallelism });
    await recordSchemaObjects(control, migration, 'post-data', result.objects);
    log(`post-data done: ${result.objects.length} objects`);
  } finally {
    await control.end();
  }
});

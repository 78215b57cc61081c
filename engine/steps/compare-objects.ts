/**
 * The final comparison's part beyond tables (Compare, not LiveCompare: neither is streamed, so
 * they only agree after the load or after cutover): large objects, saved as a comparison under
 * pg_catalog.pg_largeobject, and materialized views, each named in the report when its contents
 * differ from the source's (engine/compare/materialized-views.ts says why that does not fail).
 */
import { compareLargeObjects } from '../compare/large-objects.js';
import { compareMaterializedViews } from '../compare/materialized-views.js';
import { migratedObjects, recordEvent, recordSchemaObjects, saveComparison } from '../control/index.js';
import type pg from 'pg';
import type { TaskStepContext } from './task.js';

export async function compareOtherObjects(context: TaskStepContext, control: pg.Client, snapshot: string | undefined): Promise<void> {
  const { migration, spec, connectSource, connectTarget, log } = context;
  const largeObjects = await compareLargeObjects(connectSource, connectTarget, { snapshot, maxDifferences: spec.compare.maxDifferencesReported });
  if (largeObjects) {
    log(`large objects: ${largeObjects.status} (${largeObjects.sourceRows} objects)`);
    await saveComparison(control, migration, largeObjects);
  }
  const views = await compareMaterializedViews(connectSource, connectTarget, await migratedObjects(control, migration, 'materialized view'), {
    method: 'checksum',
    chunkRows: spec.compare.chunkRows,
    maxDifferences: spec.compare.maxDifferencesReported,
    snapshot,
  });
  await recordSchemaObjects(control, migration, 'post-data', views);
  const differing = views.filter((v) => v.status === 'not_migrated').map((v) => v.identity);
  if (differing.length) {
    await recordEvent(control, migration, 'warn', `materialized views whose contents differ from the source's (stale or volatile there; the target holds a refresh): ${differing.join(', ')}`);
  }
}

/**
 * What logical replication does not carry, put right once the stream has drained (FinishCutover):
 * large objects (engine/cutover/large-objects.ts) and materialized views
 * (engine/cutover/materialized-views.ts). Both are written to the report.
 */
import type pg from 'pg';
import { migratedObjects, recordEvent, recordSchemaObjects } from '../control/index.js';
import { describeResync, resyncLargeObjects } from '../cutover/large-objects.js';
import { refreshMaterializedViews } from '../cutover/materialized-views.js';
import type { MigrationSpec } from '../spec/index.js';

export async function resyncAtCutover(spec: MigrationSpec, source: pg.Client, target: pg.Client): Promise<{ largeObjects: number; materializedViews: number }> {
  const resync = await resyncLargeObjects(source, target);
  const changed = resync.created.length + resync.changed.length + resync.unlinked.length;
  const line = describeResync(resync);
  await recordEvent(target, spec.name, 'info', line);
  if (changed > 0) {
    await recordSchemaObjects(target, spec.name, 'cutover', [{ kind: 'large objects', identity: 'resynced at cutover', status: 'replaced', detail: line }]);
  }
  const views = spec.schema.sync.materializedViews ? await refreshMaterializedViews(source, target, await migratedObjects(target, spec.name, 'materialized view')) : [];
  if (views.length) await recordEvent(target, spec.name, 'info', `materialized views refreshed at cutover: ${views.join(', ')}`);
  return { largeObjects: changed, materializedViews: views.length };
}

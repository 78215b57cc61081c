/** SchemaPreData: registers the run in the target's control schema and creates the tables and other pre-data objects. */
import { dataTables } from '../catalog/tables.js';
import type { SecretsProvider } from '../connect/index.js';
import { beginMigration, ensureControlSchema, recordEvent, recordSchemaObjects } from '../control/index.js';
import { migratePreData } from '../schema/index.js';
import type { MigrationSpec } from '../spec/index.js';
import { withSides } from './sides.js';

const countBy = <T>(items: T[], key: (item: T) => string) =>
  items.reduce<Record<string, number>>((counts, item) => ((counts[key(item)] = (counts[key(item)] ?? 0) + 1), counts), {});

/** `execution`: the Step Functions execution running the migration, recorded for cleanup (see cleanupStep). */
export async function schemaPreDataStep(spec: MigrationSpec, secrets: SecretsProvider, execution?: string) {
  return withSides(spec, secrets, { source: true, target: true }, async ({ source, target }) => {
    await ensureControlSchema(target);
    await beginMigration(target, spec.name, spec, execution);
    if (spec.mode === 'cdc') {
      await recordEvent(target, spec.name, 'info', 'pre-data: skipped, mode "cdc" streams into existing tables');
      return { tables: 0, objects: {} };
    }
    const result = await migratePreData(source, target, spec);
    await recordSchemaObjects(target, spec.name, 'pre-data', result.objects);
    await recordEvent(target, spec.name, 'info', `pre-data: ${result.objects.length} objects`);
    return { tables: dataTables(result.tables).length, objects: countBy(result.objects, (o) => o.status) };
  });
}

/** SchemaPreData: registers the run in the target's control schema and creates the tables and other pre-data objects. */
import { dataTables } from '../catalog/tables.js';
import type { SecretsProvider } from '../connect/index.js';
import { beginMigration, ensureControlSchema, recordEvent, recordSchemaObjects, takeOverRun } from '../control/index.js';
import { migratePreData } from '../schema/index.js';
import type { MigrationSpec } from '../spec/index.js';
import { withSides } from './sides.js';

const countBy = <T>(items: T[], key: (item: T) => string) =>
  items.reduce<Record<string, number>>((counts, item) => ((counts[key(item)] = (counts[key(item)] ?? 0) + 1), counts), {});

/**
 * `execution`: the Step Functions execution running the migration, recorded for cleanup (see
 * cleanupStep). With `resume`, the execution takes over the paused run of the same name
 * instead: its tables and objects are already there. A new run that would drop or truncate the
 * tables a finished run of the same name loaded is refused unless `force`.
 */
export async function schemaPreDataStep(
  spec: MigrationSpec,
  secrets: SecretsProvider,
  execution?: string,
  { resume = false, force = false, continues = null }: { resume?: boolean; force?: boolean; continues?: string | null } = {},
) {
  return withSides(spec, secrets, { source: true, target: true }, async ({ source, target }) => {
    await ensureControlSchema(target);
    if (resume) {
      const run = await takeOverRun(target, spec.name, spec, execution ?? 'local', { continues });
      await recordEvent(
        target,
        spec.name,
        'info',
        continues ? `continued as ${execution ?? 'a local run'} (phase ${run.phase})` : `resumed by ${execution ?? 'a local run'} (it had stopped in phase ${run.stoppedIn ?? run.phase})`,
      );
      return { tables: 0, objects: {} };
    }
    await beginMigration(target, spec.name, spec, execution, { force });
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

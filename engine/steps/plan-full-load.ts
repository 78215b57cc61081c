/** PlanFullLoad: splits the selected tables into work units and decides how many copy workers the FullLoad map runs. */
import { dataTables, listTables } from '../catalog/tables.js';
import { serverVersion, type SecretsProvider } from '../connect/index.js';
import { loadTotals, recordSchemaObjects, saveIndexJobs, setPhase, unfinishedUnits } from '../control/index.js';

import { planUnits, savePlan, targetFacts, targetOf } from '../load/planner.js';
import { largeObjectOwnersMissing, planLargeObjects } from '../load/large-objects.js';
import { loadTimeIndexJobs } from '../schema/index.js';
import type { MigrationSpec } from '../spec/index.js';
import { withSides } from './sides.js';

/** How many copy workers run: fullLoad.parallelism, but no more than there are units to copy (and at least one). */
export function copyWorkerCount(parallelism: number, units: number): number {
  return Math.max(1, Math.min(parallelism, units));
}

/** A resumed run keeps its plan: only the units left are copied (a new run's registration cleared the last one's). */
export async function planFullLoadStep(spec: MigrationSpec, secrets: SecretsProvider) {
  return withSides(spec, secrets, { source: true, target: true }, async ({ source, target }) => {
    await setPhase(target, spec.name, 'load');
    if ((await loadTotals(target, spec.name)).units > 0) {
      const pending = (await unfinishedUnits(target, spec.name)).length;
      const workerCount = copyWorkerCount(spec.fullLoad.parallelism, pending);
      return { units: pending, workers: Array.from({ length: workerCount }, (_, i) => i + 1) };
    }
    const tables = await listTables(source, spec.objects);
    const sourceVersionNum = await serverVersion(source);
    const facts = await targetFacts(target, dataTables(tables).map(targetOf));
    const largeObjects = await planLargeObjects(source, spec.fullLoad.splitTablesLargerThan);
    const units = planUnits({ tables, target: facts, spec, sourceVersionNum, largeObjects: largeObjects.units });
    await savePlan(target, spec.name, tables, units, largeObjects.table ? [largeObjects.table] : []);
    await recordSchemaObjects(target, spec.name, 'pre-data', await largeObjectOwnersMissing(source, target));
    await saveIndexJobs(target, spec.name, await loadTimeIndexJobs(source, spec));
    const workerCount = copyWorkerCount(spec.fullLoad.parallelism, units.length);
    return { units: units.length, workers: Array.from({ length: workerCount }, (_, i) => i + 1) };
  });
}

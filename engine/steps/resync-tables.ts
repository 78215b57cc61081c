/**
 * ResyncTables: a full+cdc run paused during its full load resumes here. The snapshot the load
 * read ended with the pause, so the tables with units left are copied again whole, at the
 * snapshot of a temporary slot, and the stream applies their changes only from that snapshot's
 * LSN on (engine/cdc/table-sync.ts): no gap, no duplicate. The tables whose units were all
 * copied keep their rows, and their changes are applied from the slot's checkpoint as before.
 * Everything commits in one target transaction, so a resync cut short is simply done again.
 */
import { qualified, withTransaction } from '../sql.js';
import { syncTables } from '../cdc/table-sync.js';
import type { TableRef } from '../catalog/tables.js';
import type { SecretsProvider } from '../connect/index.js';
import type pg from 'pg';
import { markTableResynced, markUnitDone, namesMapped, recordEvent, unfinishedUnits, type UnfinishedUnit } from '../control/index.js';
import { namesNow } from '../schema/mapping.js';
import { isLargeObjects } from '../load/large-objects.js';
import { connectReplication, streamConfigOf } from './replication.js';
import type { TaskStepContext } from './task.js';

export async function resyncTablesStep(context: TaskStepContext, { secrets }: { secrets: SecretsProvider }): Promise<number> {
  const { migration, spec, log } = context;
  const target = await context.connectTarget();
  try {
    const unfinished = await unfinishedUnits(target, migration);
    await leaveLargeObjectsToCutover(target, migration, unfinished);
    const tables = uniqueTables(unfinished.map((unit) => unit.source).filter((table) => !isLargeObjects(table)));
    if (tables.length === 0) return 0;
    const streamConfig = await streamConfigOf(spec, secrets);
    await withTransaction(target, async () => {
      const names = namesNow(spec, await namesMapped(target, migration));
      const options = { migration, connectReplication: () => connectReplication(streamConfig), connectSource: context.connectSource, target, names };
      const starts = await syncTables(options, tables);
      for (const table of tables) await markTableResynced(target, migration, table);
      await recordEvent(target, migration, 'info', `resume: copied again at a new snapshot (changes applied from ${[...starts.values()][0]}): ${tables.map(qualified).join(', ')}`);
    });
    log(`copied ${tables.length} table(s) again at a new snapshot: ${tables.map(qualified).join(', ')}`);
    return tables.length;
  } finally {
    await target.end().catch(() => undefined);
  }
}

/** Large objects are not streamed: the cutover copies every one that differs, so their units left need no snapshot. */
async function leaveLargeObjectsToCutover(target: pg.Client, migration: string, unfinished: UnfinishedUnit[]): Promise<void> {
  const units = unfinished.filter((unit) => isLargeObjects(unit.source));
  for (const unit of units) await markUnitDone(target, migration, unit.id, { rows: 0, bytes: 0 });
  if (units.length) await recordEvent(target, migration, 'info', `resume: ${units.length} large-object unit(s) left to the resync at cutover`);
}

function uniqueTables(tables: TableRef[]): TableRef[] {
  const byName = new Map(tables.map((table) => [qualified(table), table]));
  return [...byName.values()];
}

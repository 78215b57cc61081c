/**
 * Precheck of per-table filters under CDC (issue 15 item 2): a table with a `where` filter needs
 * the old row image of its updates and deletes (REPLICA IDENTITY FULL, or a key holding every
 * column the filter reads) so that a row moving across the filter becomes an insert or a delete
 * on the target; a table's key columns cannot be left out, the applier finds rows by them.
 */
import type pg from 'pg';
import { dataTables, listTables } from '../catalog/tables.js';
import { excludedColumns, filterProblems, optionsOf, replicaIdentityFullSql } from '../cdc/row-filter.js';
import type { MigrationSpec } from '../spec/index.js';
import type { CheckResult } from './index.js';
import { droppedColumnDependents, readDroppedColumns } from '../schema/dropped-columns.js';

export async function checkCdcFilters(client: pg.Client, objects: MigrationSpec['objects']): Promise<CheckResult> {
  const id = 'source.filter_identity';
  const problems: string[] = [];
  const fixes: string[] = [];
  let filtered = 0;
  for (const table of dataTables(await listTables(client, objects))) {
    const options = optionsOf(objects, table);
    const excluded = excludedColumns(table.columns.map((c) => c.name), options);
    if (!options.where && excluded.size === 0) continue;
    filtered++;
    const found = await filterProblems(client, table, options.where, excluded);
    if (found.length === 0) continue;
    problems.push(...found);
    fixes.push(replicaIdentityFullSql(table));
  }
  if (problems.length > 0) {
    return {
      id,
      status: 'fail',
      message: `${problems.length} filtered table(s) cannot be replicated exactly: ${problems.join('; ')}.`,
      remediation: `Run on the source: ${fixes.join(' ')} (the old row of every update and delete is then logged whole), or remove the table's where filter or column choice.`,
    };
  }
  return { id, status: 'pass', message: `${filtered} filtered table(s) log the old rows their filters need.` };
}

/**
 * With objects.excludedColumns "drop": the left-out columns are not created on the target. Indexes,
 * constraints and triggers using them are skipped (and reported); anything else that uses one
 * (a view, rule, policy, statistics object, owned sequence, partition key) could not be created.
 */
export async function checkDroppedColumns(client: pg.Client, spec: MigrationSpec): Promise<CheckResult> {
  const id = 'schema.dropped_columns';
  const dropped = await readDroppedColumns(client, spec, await listTables(client, spec.objects));
  const dependents = await droppedColumnDependents(client, dropped);
  if (dependents.length > 0) {
    return {
      id,
      status: 'fail',
      message: `${dependents.length} object(s) use columns that objects.excludedColumns "drop" leaves out of the target: ${dependents.join('; ')}.`,
      remediation: 'Keep those columns (remove them from excludeColumns, or add them to columns), leave the objects out of the migration, or use objects.excludedColumns "keep".',
    };
  }
  return { id, status: 'pass', message: `${dropped.length} column(s) left out of the target; indexes, constraints and triggers using them are skipped.` };
}

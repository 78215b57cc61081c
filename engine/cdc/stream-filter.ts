/**
 * The transform step between stream and apply: drops the changes a table's `operations` (from
 * the spec's objects.tables[…].operations) leave out. The publication carries every operation
 * (its `publish` list is for all its tables at once), so the choice per table is made here. Pure.
 */
import type { PgoutputMessage } from './pgoutput.js';

export type Operation = 'insert' | 'update' | 'delete' | 'truncate';

/**
 * A filter over the stream's messages, in stream order (it learns table names from Relation
 * messages): the message to apply, a TRUNCATE narrowed to the tables that allow it, or
 * undefined to drop it. Tables without an entry get every operation.
 */
export function operationFilter(operations: Record<string, Operation[]> | undefined): (message: PgoutputMessage) => PgoutputMessage | undefined {
  const restricted = new Map(Object.entries(operations ?? {}).map(([table, ops]) => [table, new Set(ops)]));
  const tables = new Map<number, string>();
  const allows = (relationId: number, op: Operation) => {
    const table = tables.get(relationId);
    const ops = table === undefined ? undefined : restricted.get(table);
    return !ops || ops.has(op);
  };
  return (message) => {
    if (restricted.size === 0) return message;
    switch (message.tag) {
      case 'relation':
        tables.set(message.relationId, `${message.schema}.${message.name}`);
        return message;
      case 'insert':
      case 'update':
      case 'delete':
        return allows(message.relationId, message.tag) ? message : undefined;
      case 'truncate': {
        const relationIds = message.relationIds.filter((id) => allows(id, 'truncate'));
        return relationIds.length === 0 ? undefined : { ...message, relationIds };
      }
      default:
        return message;
    }
  };
}

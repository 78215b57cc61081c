/**
 * The transform step between stream and apply: drops the changes a table's `operations` (from
 * the spec's objects.tables[…].operations) leave out. The publication carries every operation
 * (its `publish` list is for all its tables at once), so the choice per table is made here. Pure.
 * Also what every such stage shares: where the stream is (StreamTransaction), and a TRUNCATE
 * narrowed to the tables a stage keeps.
 */
import { parseLsn, type PgoutputMessage } from './pgoutput.js';
import { tableKey } from '../catalog/tables.js';

type TruncateMessage = Extract<PgoutputMessage, { tag: 'truncate' }>;

/**
 * Where the stream is: the commit LSN of the transaction being received (from its Begin), and
 * whether its changes come in blocks of a transaction streamed while still in progress (whose
 * commit LSN is not known yet). Noted once per message, read by the stages.
 */
export class StreamTransaction {
  commitLsn = 0n;
  inProgress = false;

  note(message: PgoutputMessage): void {
    if (message.tag === 'begin') this.commitLsn = parseLsn(message.finalLsn);
    else if (message.tag === 'stream-start') this.inProgress = true;
    else if (message.tag === 'stream-stop') this.inProgress = false;
  }
}

/** A TRUNCATE narrowed to the relations `keeps`: the message itself when it keeps them all, undefined when none. */
export function narrowTruncate(message: TruncateMessage, keeps: (relationId: number) => boolean): TruncateMessage | undefined {
  const relationIds = message.relationIds.filter(keeps);
  if (relationIds.length === message.relationIds.length) return message;
  return relationIds.length === 0 ? undefined : { ...message, relationIds };
}

export type Operation = 'insert' | 'update' | 'delete' | 'truncate';

/**
 * A filter over the stream's messages, in stream order (it learns table names from Relation
 * messages): the message to apply, a TRUNCATE narrowed to the tables that allow it, or
 * undefined to drop it. Tables without an entry get every operation.
 */
/** `operations` is keyed by `tableKey`. */
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
        tables.set(message.relationId, tableKey(message));
        return message;
      case 'insert':
      case 'update':
      case 'delete':
        return allows(message.relationId, message.tag) ? message : undefined;
      case 'truncate':
        return narrowTruncate(message, (id) => allows(id, 'truncate'));
      default:
        return message;
    }
  };
}

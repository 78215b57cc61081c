/**
 * ReverseReplication (the replicate task with PGFERRY_REVERSE=1): after a cutover with
 * cutover.reverse, streams the target's reverse slot (engine/cutover/reverse.ts armReverse) and
 * applies the changes to the source, with the checkpoint, heartbeat and drain requests in the
 * SOURCE's control schema, until a fallback has drained it or finish stops it. Its transactions
 * carry the reverse origin and it skips the forward applier's, so nothing loops.
 */
import type pg from 'pg';
import { runReplicator } from '../cdc/replicator.js';
import { reverseNames, reverseOrigin, reverseReplicationNames } from '../cutover/reverse.js';
import { reverseRunRegistered } from '../control/index.js';
import { PgferryError } from '../errors.js';
import { writeThroughFence } from '../cutover/fence.js';
import { streamConfigOf, withReplicationControl, type ReplicationStepOptions } from './replication.js';
import type { CallbackStepContext } from './task.js';

/** Runs `body` on fresh connections, ended after it. */
async function withClients<T>(connects: (() => Promise<pg.Client>)[], body: (clients: pg.Client[]) => Promise<T>): Promise<T> {
  const clients = await Promise.all(connects.map((connect) => connect()));
  try {
    return await body(clients);
  } finally {
    await Promise.all(clients.map((client) => client.end().catch(() => undefined)));
  }
}

export async function reverseReplicationStep(context: CallbackStepContext, options: ReplicationStepOptions): Promise<void> {
  const { spec, log } = context;
  const streamConfig = await streamConfigOf(spec, options.secrets, 'target');
  // The source is fenced since cutover: pgferry's sessions there must still write.
  const connectApplySide = async (): Promise<pg.Client> => {
    const client = await context.connectSource();
    await writeThroughFence(client);
    return client;
  };
  // The sides swapped: errors and status go to the source's control schema.
  const reverse: CallbackStepContext = { ...context, connectSource: context.connectTarget, connectTarget: connectApplySide };
  await withReplicationControl(reverse, 'not streaming back', async (control) => {
    if (!(await reverseRunRegistered(control, spec.name))) {
      throw new PgferryError(
        'pgferry.ReverseNotArmed',
        `Migration ${spec.name} has no reverse replication armed on the source: cutover arms it when the spec sets cutover.reverse: true.`,
      );
    }
    await context.callback.success({ reverse: true });
    const mapping = await withClients([context.connectSource, context.connectTarget], ([source, target]) => reverseNames(spec, source!, target!));
    const names = reverseReplicationNames(spec);
    const end = await runReplicator({
      migration: spec.name,
      slotName: names.slotName,
      publicationName: names.publicationName,
      conflictPolicy: spec.cdc.conflictPolicy,
      batch: spec.cdc.batch,
      retryWindowMs: spec.cdc.retryWindowMinutes * 60_000,
      heartbeatMs: 1000,
      connectSource: reverse.connectSource,
      connectTarget: reverse.connectTarget,
      streamConfig,
      log,
      signal: options.signal,
      onHeartbeat: options.onHeartbeat,
      origin: reverseOrigin(spec),
      names: mapping,
    });
    log(end === 'drained' ? 'reverse stream drained for fallback; streaming ended' : 'reverse stream stopped');
  });
}

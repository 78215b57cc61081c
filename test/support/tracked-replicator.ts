/**
 * A CDC run that records the keys it changes (issue 14's incremental comparison), set up on two
 * test clusters without the workflow: control schema, migration, publication and slot, and a
 * replicator streaming into the target until `stop()`.
 */
import pg from 'pg';
import { runReplicator, type ReplicatorEnd } from '../../engine/cdc/replicator.js';
import { createSlotWithSnapshot, ensurePublication } from '../../engine/cdc/slot.js';
import { beginMigration, ensureControlSchema, readReplicationStatus, registerReplication } from '../../engine/control/index.js';
import type { LocalCluster } from '../../local/dev/cluster.js';
import type { FlowLimits } from '../../engine/flow/flow-control.js';
import { replicationConnector, replicatorConnections } from './clusters.js';
import { waitFor } from './wait.js';

export interface TrackedReplicator {
  /** A session on the target database (the control schema's). */
  control: pg.Client;
  /** A session on the source database. */
  src: pg.Client;
  /** How the replicator ended (an Error when it failed). */
  run: Promise<ReplicatorEnd | Error>;
  /** Stops the replicator, drops the slot, closes the sessions. */
  stop: () => Promise<void>;
}

export async function startTrackedReplicator(options: {
  source: LocalCluster;
  target: LocalCluster;
  database: string;
  migration: string;
  slot: string;
  tables: string[];
  maxDelayMs: number;
  logs: string[];
  /** CDC flow control limits (engine/flow/); without it, none. */
  flow?: FlowLimits;
}): Promise<TrackedReplicator> {
  const { source, target, database, migration, slot } = options;
  const control = await target.connect(database);
  const src = await source.connect(database);
  await ensureControlSchema(control);
  await beginMigration(control, migration, { mode: 'cdc' });
  await ensurePublication(src, { name: slot, tables: options.tables.map((name) => ({ schema: 'public', name })) });
  const holder = await createSlotWithSnapshot(replicationConnector(source, database), slot);
  await holder.release();
  await registerReplication(control, migration, { slotName: slot, publicationName: slot, consistentLsn: holder.slot.consistentLsn });
  const abort = new AbortController();
  const run = runReplicator({
    migration,
    slotName: slot,
    publicationName: slot,
    conflictPolicy: 'error',
    batch: { maxRows: 1000, maxBytes: 1 << 20, maxDelayMs: options.maxDelayMs },
    retryWindowMs: 60_000,
    heartbeatMs: 200,
    ...replicatorConnections(source, target, database),
    recordChangedKeys: true,
    ...(options.flow ? { flow: options.flow } : {}),
    log: (line) => options.logs.push(line),
    signal: abort.signal,
  }).catch((error: Error) => error);
  await waitFor('the streamer to stream', async () => (await readReplicationStatus(control, migration))?.streamingSince);
  return {
    control,
    src,
    run,
    stop: async () => {
      abort.abort();
      await run;
      await src.query('SELECT pg_drop_replication_slot($1) FROM pg_replication_slots WHERE slot_name = $1 AND NOT active', [slot]).catch(() => undefined);
      await Promise.all([control.end(), src.end()]);
    },
  };
}

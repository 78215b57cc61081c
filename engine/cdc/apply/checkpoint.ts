/**
 * The checkpoint: the end LSN of the last source commit a target transaction holds, written in
 * that same transaction, which then commits. The slot is acknowledged only after this returns,
 * so a crash at any point resumes without loss and without applying anything twice
 * (docs/architecture.md, "Consistency").
 */
import { CONTROL_SCHEMA } from '../../catalog/tables.js';
import { currentStreamerGeneration, writeCheckpoint, type Checkpoint } from '../../control/checkpoint.js';
import { ApplyError, StreamerFencedError } from './errors.js';
import type { TargetSession } from './session.js';

/** Writes the checkpoint into the open target transaction and commits it. */
export async function commitWithCheckpoint(session: TargetSession, checkpoint: Checkpoint): Promise<void> {
  await session.begin();
  const matched = await writeCheckpoint(session.client, checkpoint);
  if (matched !== 1 && checkpoint.generation !== undefined) {
    const current = await currentStreamerGeneration(session.client, checkpoint.migration);
    if (current !== undefined && current !== checkpoint.generation) throw new StreamerFencedError(checkpoint.migration, checkpoint.generation, current);
  }
  if (matched !== 1) {
    throw new ApplyError(
      `Cannot record the applied LSN: ${matched} rows of ${CONTROL_SCHEMA}.replication have migration = ${JSON.stringify(checkpoint.migration)} (expected exactly 1). ` +
        'Start replication for this migration first (it registers the row), or check the migration name.',
    );
  }
  await session.commit();
}

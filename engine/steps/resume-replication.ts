/**
 * ResumeReplication: the workflow restarts a streamer that stopped reporting. The new one
 * reports at once and streams from the target's checkpoint until cutover has drained.
 */
import { recordRestart } from '../control/index.js';
import { streamChanges, streamConfigOf, withReplicationControl, type ReplicationStepOptions } from './replication.js';
import type { CallbackStepContext } from './task.js';

export async function resumeReplicationStep(context: CallbackStepContext, options: ReplicationStepOptions): Promise<void> {
  const { migration, spec, callback, log } = context;
  const streamConfig = await streamConfigOf(spec, options.secrets);
  await withReplicationControl(context, 'not resuming replication', async (control) => {
    await recordRestart(control, migration);
    await callback.success({ resumed: true });
    log('restarted: resuming from the checkpoint');
    await streamChanges(context, streamConfig, options);
  });
}

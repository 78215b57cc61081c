/**
 * ResumeReplication: a new streamer, when the workflow restarts one that stopped reporting, or
 * resumes a paused run. It reports at once, waits until apply may begin (at once unless a
 * resumed run has yet to finish its load), and streams from the target's checkpoint until
 * cutover has drained.
 */
import { recordRestart } from '../control/index.js';
import { streamChanges, streamConfigOf, withReplicationControl, type ReplicationStepOptions } from './replication.js';
import { applyRequested } from './start-replication.js';
import type { CallbackStepContext } from './task.js';

export async function resumeReplicationStep(context: CallbackStepContext, options: ReplicationStepOptions): Promise<void> {
  const { migration, spec, callback, log } = context;
  const streamConfig = await streamConfigOf(spec, options.secrets);
  await withReplicationControl(context, 'not resuming replication', async (control) => {
    await recordRestart(control, migration);
    await callback.success({ resumed: true });
    if (!(await applyRequested(context, control, options.signal))) {
      log('the migration ended or paused before apply began: not streaming');
      return;
    }
    log('restarted: resuming from the checkpoint');
    await streamChanges(context, streamConfig, options);
  });
}

/** The Compare task, and LiveCompare (PGFERRY_LIVE=1) while changes still flow: engine/steps/compare.ts. */
import { compareStep } from '../engine/steps/compare.js';
import { runTask } from './task.js';

// Comparing reads both sides and replaces its results: a comparison that lost a side runs again.
await runTask('compare', async (context) => {
  await compareStep(context, { live: context.env.PGFERRY_LIVE === '1' });
}, undefined, { redoOnOutage: true });

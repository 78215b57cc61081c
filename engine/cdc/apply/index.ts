/** The CDC apply engine (applier.ts describes the model); what code outside engine/cdc/apply uses. */
export { Applier, type ApplierOptions, type ApplierStats, type FlushResult } from './applier.js';
export { ApplyConflictError, type ConflictPolicy } from './conflict.js';
export { ApplyError, StreamerFencedError } from './errors.js';
// The checkpoint's home is the control schema's module; re-exported for the applier's callers.
export { readAppliedLsn } from '../../control/checkpoint.js';

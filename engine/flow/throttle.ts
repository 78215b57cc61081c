/**
 * `pgferry throttle` (locally, or through the Operator function on AWS): changes the flow
 * control limits of a run while it goes on (issue 15, item 3). The new limits go to the target's
 * control schema (engine/control/flow.ts); the running copy workers and the CDC applier read
 * them at their next beat, within a few seconds.
 */
import type pg from 'pg';
import { z } from 'zod';
import { formatBytes } from '../bytes.js';
import { controlTableExists, findMigration, readFlowStatus, setFlowLimits, type FlowLimitsChange, type FlowStatus } from '../control/index.js';
import type { MigrationSpec } from '../spec/index.js';
import type { FlowLimits } from './rate-limiter.js';

const LIMIT_MESSAGE = 'must be a whole number per second: 0 lifts the limit, null goes back to the spec';
const limitChange = z.int({ error: LIMIT_MESSAGE }).min(0, { error: LIMIT_MESSAGE }).nullable().optional();

/**
 * What to change: `rowsPerSecond` and `bytesPerSecond` (a number: the new limit, 0: none, null:
 * the spec's again, left out: unchanged), for the full load, CDC, or both (default).
 */
export const throttleChangeSchema = z.strictObject({
  phases: z.array(z.enum(['load', 'cdc'])).min(1).default(['load', 'cdc']),
  rowsPerSecond: limitChange,
  bytesPerSecond: limitChange,
});
export type ThrottleChange = z.input<typeof throttleChangeSchema>;

export type ThrottleResult = { applied: true; message: string; flow: FlowStatus } | { applied: false; reason: string };

/** "1,000 rows/s, 10.0 MB/s", or "no limit". */
export function describeLimits(limits: FlowLimits): string {
  const parts = [
    limits.rowsPerSecond ? `${Math.round(limits.rowsPerSecond).toLocaleString('en-US')} rows/s` : undefined,
    limits.bytesPerSecond ? `${formatBytes(Math.round(limits.bytesPerSecond))}/s` : undefined,
  ].filter(Boolean);
  return parts.length ? parts.join(', ') : 'no limit';
}

/** The limits in force for both phases, in one line. */
export function describeFlow(flow: FlowStatus): string {
  const phase = (name: string, p: FlowStatus['load']) => `${name} ${describeLimits(p.limits)}${p.throttled ? ' (set by pgferry throttle)' : ''}`;
  return `${phase('full load', flow.load)}; ${phase('CDC', flow.cdc)}`;
}

/**
 * Writes the change for a run that has not ended (a paused run applies it when resumed); with
 * nothing to change, only says what is in force. Refuses, saying why, a run that never started
 * on this target or has ended.
 */
export async function requestMigrationThrottle(target: pg.Client, spec: MigrationSpec, input: ThrottleChange): Promise<ThrottleResult> {
  const change = throttleChangeSchema.parse(input);
  const state = await findMigration(target, spec.name);
  if (!state) {
    return {
      applied: false,
      reason: `Migration ${spec.name} has not started on this target: there is nothing to throttle. Set the limits in the spec instead (fullLoad.maxRowsPerSecond, fullLoad.maxBytesPerSecond, cdc.maxRowsPerSecond, cdc.maxBytesPerSecond).`,
    };
  }
  if (!(await controlTableExists(target, 'flow_limits'))) {
    return { applied: false, reason: `Migration ${spec.name} was started by a pgferry without flow control: its workers would not read the limits. Resume it with this version first.` };
  }
  if (state.phase === 'done' || state.phase === 'failed') {
    return { applied: false, reason: `Migration ${spec.name} has ended (phase: ${state.phase}): there is nothing to throttle.` };
  }
  const limits = { rowsPerSecond: change.rowsPerSecond, bytesPerSecond: change.bytesPerSecond };
  const changes = limits.rowsPerSecond !== undefined || limits.bytesPerSecond !== undefined;
  if (changes) await setFlowLimits(target, spec.name, Object.fromEntries(change.phases.map((phase) => [phase, limits])) as FlowLimitsChange);
  const flow = (await readFlowStatus(target, spec.name))!;
  const when = state.phase === 'paused' ? ' They apply when the run is resumed.' : ' Running copy workers and the CDC applier apply them within a few seconds.';
  return {
    applied: true,
    flow,
    message: `${changes ? 'Flow control of' : 'Limits in force for'} ${spec.name}: ${describeFlow(flow)}.${changes ? when : ''}`,
  };
}

/**
 * The texts of the migration's alerts (engine/alerts/index.ts): each names the migration, the
 * condition, its figures and what to do. They are built from figures and from error messages,
 * which are secret-free by contract; `withoutCredentials` still takes out anything shaped like
 * a connection string or a password setting, since an alert leaves the deployment.
 */
import { formatBytes } from '../bytes.js';
import type { RetainedWal } from '../cdc/retained-wal.js';
import { retainedWalMessage } from '../cdc/retained-wal.js';
import type { RetainedWalState } from '../control/retained-wal.js';
import type { MigrationSpec } from '../spec/index.js';
import type { AlertText } from './index.js';

type Spec = Pick<MigrationSpec, 'name' | 'mode' | 'alerts'>;

const CAUSE_MAX = 1_000;

/** `text` without connection URIs (postgres://user:password@host/db) or key=value passwords. */
export function withoutCredentials(text: string): string {
  return text
    .replace(/\b[a-z][a-z0-9+.-]*:\/\/[^\s'"]*@[^\s'"]*/gi, '[connection string removed]')
    .replace(/\b(password|passwd|pwd|secret|token)\s*[=:]\s*("[^"]*"|'[^']*'|\S+)/gi, '$1=[removed]');
}

const cause = (text: string) => {
  const clean = withoutCredentials(text.trim());
  return clean.length <= CAUSE_MAX ? clean : `${clean.slice(0, CAUSE_MAX)}…`;
};

const seconds = (value: number) => `${Math.round(value)} s`;

export interface LagFigures {
  lagSeconds: number;
  lagBytes: number | null;
  appliedLsn: string | null;
  rowsApplied: number;
}

function lagFigures(figures: LagFigures): string {
  const bytes = figures.lagBytes !== null ? ` (${formatBytes(figures.lagBytes)} of WAL not yet applied)` : '';
  return `${seconds(figures.lagSeconds)} behind the source${bytes}; applied up to LSN ${figures.appliedLsn ?? 'none yet'}, ${figures.rowsApplied} rows so far`;
}

export function lagAlert(spec: Spec, figures: LagFigures): AlertText {
  const threshold = spec.alerts.lagThresholdSeconds;
  return {
    level: 'warn',
    subject: `pgferry ${spec.name}: replication lag ${seconds(figures.lagSeconds)}, over ${seconds(threshold)}`,
    message:
      `Migration ${spec.name} (mode ${spec.mode}): change data capture is ${lagFigures(figures)}, above alerts.lagThresholdSeconds (${seconds(threshold)}). ` +
      'The source keeps the WAL until it is applied. What to do: see "pgferry status SPEC" and the replicate task\'s log; ' +
      'a slow or overloaded target, a throttle (cdc.maxBytesPerSecond) or a burst of writes on the source makes the lag grow. ' +
      'Cutover waits until the lag is under cutover.maxLagSeconds. A message follows when the lag is back under the threshold.',
  };
}

export function lagResolvedAlert(spec: Spec, figures: LagFigures): AlertText {
  const threshold = spec.alerts.lagThresholdSeconds;
  return {
    level: 'info',
    subject: `pgferry ${spec.name}: replication lag back under ${seconds(threshold)}`,
    message: `Migration ${spec.name} (mode ${spec.mode}): change data capture is ${lagFigures(figures)}, back under alerts.lagThresholdSeconds (${seconds(threshold)}). Nothing to do.`,
  };
}

export interface StopFigures {
  /** The error name (pgferry.Unreachable, States.Timeout, …). */
  error: string;
  /** Its cause as the workflow recorded it. */
  cause: string;
  /** The phase the run was in; undefined before it registered on the target. */
  phase?: string;
  /** What happened to the slot (failure only). */
  slot?: 'dropped' | 'kept' | 'none';
}

export function pauseAlert(spec: Spec, figures: StopFigures): AlertText {
  return {
    level: 'error',
    subject: `pgferry ${spec.name}: migration paused (${figures.error})`,
    message:
      `Migration ${spec.name} (mode ${spec.mode}) paused in phase ${figures.phase ?? 'unknown'}: ${figures.error}: ${cause(figures.cause)}\n` +
      'Its replication slot, publication and the data moved so far are kept, and the source holds back WAL until the migration goes on. ' +
      'What to do: put the cause right, then resume with "pgferry resume SPEC" (or the "Resume migration" event); ' +
      'or abandon it with "pgferry stop SPEC --drop", which drops the slot and frees the WAL.',
  };
}

export function failureAlert(spec: Spec, figures: StopFigures): AlertText {
  const slot =
    figures.slot === 'kept'
      ? 'Its replication slot is kept (cdc.keepSlotOnFailure): drop it with "pgferry stop SPEC --drop" if you will not run it again. '
      : figures.slot === 'dropped'
        ? 'Its replication slot and publication are dropped. '
        : '';
  return {
    level: 'error',
    subject: `pgferry ${spec.name}: migration failed (${figures.error})`,
    message:
      `Migration ${spec.name} (mode ${spec.mode}) failed ${figures.phase ? `in phase ${figures.phase}` : 'before its run registered on the target (ValidateSpec, Precheck, or refused while another run of it is under way)'}: ` +
      `${figures.error}: ${cause(figures.cause)}\n` +
      `${slot}What to do: read the cause (the report and "pgferry status SPEC" say more), put it right and run the migration again.`,
  };
}

export function retainedWalAlert(spec: Spec, wal: RetainedWal, state: Exclude<RetainedWalState, 'ok'>, maxRetainedWalBytes: number | undefined): AlertText {
  return {
    level: state === 'lost' ? 'error' : 'warn',
    subject:
      state === 'lost'
        ? `pgferry ${spec.name}: replication slot ${wal.slotName} lost`
        : `pgferry ${spec.name}: replication slot holds ${formatBytes(wal.bytes ?? 0)} of WAL`,
    message: `Migration ${spec.name} (mode ${spec.mode}): ${retainedWalMessage(wal, state, maxRetainedWalBytes !== undefined ? { maxRetainedWalBytes } : {})}`,
  };
}

export function retainedWalResolvedAlert(spec: Spec, wal: RetainedWal): AlertText {
  return {
    level: 'info',
    subject: `pgferry ${spec.name}: retained WAL back under its threshold`,
    message: `Migration ${spec.name} (mode ${spec.mode}): replication slot ${wal.slotName} now holds back ${formatBytes(wal.bytes ?? 0)} of WAL on the source, under its threshold. Nothing to do.`,
  };
}

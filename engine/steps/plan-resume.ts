/**
 * PlanResume: where a resumed run goes on, from what it has done (not from where it failed):
 *  - `load`: units are left to copy (mode full): a new snapshot, then the pending units only;
 *  - `resync`: units are left to copy with CDC: their tables are copied again whole at a new
 *    snapshot whose LSN the stream applies them from (resync-tables.ts), then as `stream`;
 *  - `finish-load`: every unit is in; the load is finished (sequences, post-data) before anything else;
 *  - `stream`: CDC modes, apply not yet begun: a new streamer waits for BeginApply;
 *  - `replicate`: CDC modes, applying: a new streamer goes on from the target's checkpoint;
 *  - `compare`: mode full, stopped in its comparison;
 *  - `continue` / `paused`: the workflow continued itself as a new execution (`continues`): back
 *    into the CDC loop with a streamer of its own, or into the paused loop.
 * A run whose slot is gone (dropped, or invalidated by max_slot_wal_keep_size) is refused: going
 * on would leave a gap, so it needs a reload.
 */
import type pg from 'pg';
import { replicationNames } from '../cdc/slot.js';
import type { SecretsProvider } from '../connect/index.js';
import {
  loadTotals,
  migrationState,
  readReplicationStatus,
  recordEvent,
  resetReplicationForResume,
  ResumeRefusedError,
  retryFailedUnits,
  unfinishedUnits,
  type Phase,
} from '../control/index.js';
import type { MigrationSpec } from '../spec/index.js';
import { usesCdc, withSides } from './sides.js';

export type ResumeRoute = 'load' | 'resync' | 'finish-load' | 'stream' | 'replicate' | 'compare' | 'continue' | 'paused' | 'reverse';

export interface ResumePlan {
  route: ResumeRoute;
  /** Units left to copy. */
  pendingUnits: number;
}

export async function planResumeStep(spec: MigrationSpec, secrets: SecretsProvider, { continues = null }: { continues?: string | null } = {}): Promise<ResumePlan> {
  return withSides(spec, secrets, { source: usesCdc(spec), target: true }, async ({ source, target }) => {
    const state = await migrationState(target, spec.name);
    if (!state) throw new ResumeRefusedError(`Migration ${spec.name} is no longer registered on the target: there is nothing to resume.`);
    if (continues) return { route: state.phase === 'paused' ? 'paused' : state.phase === 'reverse' ? 'reverse' : 'continue', pendingUnits: 0 };
    const stoppedIn = state.stoppedIn ?? state.phase;
    const planned = (await loadTotals(target, spec.name)).units > 0;
    const retried = await retryFailedUnits(target, spec.name);
    const pendingUnits = (await unfinishedUnits(target, spec.name)).length;
    const loadLeft = spec.mode !== 'cdc' && (!planned || pendingUnits > 0);
    const route = usesCdc(spec)
      ? await cdcRoute(spec, source, target, { stoppedIn, loadLeft, planned })
      : fullRoute(spec, { stoppedIn, loadLeft });
    await recordEvent(
      target,
      spec.name,
      'info',
      `resume: ${describeRoute(route)}${pendingUnits ? ` (${pendingUnits} unit(s) left to copy${retried ? `, ${retried} of them retried after giving up` : ''})` : ''}`,
    );
    return { route, pendingUnits };
  });
}

function fullRoute(spec: MigrationSpec, { stoppedIn, loadLeft }: { stoppedIn: Phase; loadLeft: boolean }): ResumeRoute {
  if (stoppedIn === 'schema') {
    throw new ResumeRefusedError(`Migration ${spec.name} stopped before its load began (in phase schema): there is nothing to go on from. Run it anew.`);
  }
  if (loadLeft) return 'load';
  return stoppedIn === 'compare' ? 'compare' : 'finish-load';
}

async function cdcRoute(
  spec: MigrationSpec,
  source: pg.Client,
  target: pg.Client,
  { stoppedIn, loadLeft, planned }: { stoppedIn: Phase; loadLeft: boolean; planned: boolean },
): Promise<ResumeRoute> {
  if (spec.mode !== 'cdc' && !planned) {
    throw new ResumeRefusedError(`Migration ${spec.name} stopped before its full load was planned: nothing was copied to go on from. Abandon it (pgferry stop SPEC --drop) and run it anew.`);
  }
  const replication = await readReplicationStatus(target, spec.name);
  if (!replication) {
    throw new ResumeRefusedError(`Migration ${spec.name} registered no replication slot before it stopped (in phase ${stoppedIn}): there is nothing to go on from. Run it anew.`);
  }
  await requireSlot(spec, source);
  await resetReplicationForResume(target, spec.name);
  if (loadLeft) return 'resync';
  return replication.applyRequested ? 'replicate' : 'stream';
}

/** The slot must still be there, with the WAL it needs. */
async function requireSlot(spec: MigrationSpec, source: pg.Client): Promise<void> {
  const { slotName } = replicationNames(spec);
  const { rows } = await source.query<{ wal_status: string | null }>('SELECT wal_status FROM pg_replication_slots WHERE slot_name = $1', [slotName]);
  const slot = rows[0];
  if (!slot || slot.wal_status === 'lost') {
    throw new ResumeRefusedError(
      `Migration ${spec.name} cannot resume: its replication slot ${slotName} ${slot ? 'was invalidated (the source removed WAL it still needed: max_slot_wal_keep_size)' : 'is gone from the source'}, ` +
        'so changes since its checkpoint are lost. A reload is needed: abandon it (pgferry stop SPEC --drop) and run it anew.',
    );
  }
}

function describeRoute(route: ResumeRoute): string {
  return {
    load: 'copying the units left, from a new snapshot',
    resync: 'copying the tables left again whole at a new snapshot, then a new streamer',
    'finish-load': 'finishing the load (sequences, post-data)',
    stream: 'a new streamer, applying once the load is finished',
    replicate: "a new streamer, from the target's checkpoint",
    compare: 'comparing again',
    continue: 'the CDC loop, in a new execution',
    paused: 'the paused loop, in a new execution',
    reverse: 'the Reverse loop (changes flowing back to the source), in a new execution',
  }[route];
}

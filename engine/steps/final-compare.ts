/**
 * Where the final comparison of a CDC run goes, behind the fence. When what is left to read is
 * small (changed keys, and at most FINAL_IN_STEP_MAX_BYTES of tables to compare whole: changed
 * without a usable key, or not verified while replicating), FinishCutover runs it itself: a Compare task would first have to start (30–60 s for a Fargate task), all of it
 * while applications cannot write. Otherwise the workflow's Compare task runs it.
 */
import type pg from 'pg';
import type { SecretsProvider } from '../connect/index.js';
import { loadedTables, readTableChanges, readVerifications, recordEvent } from '../control/index.js';
import { isLargeObjects } from '../load/large-objects.js';
import type { MigrationSpec } from '../spec/index.js';
import { qualified } from '../sql.js';
import { compareStep } from './compare.js';
import { connectForStep, usesCdc } from './sides.js';

/** Tables changed without a usable key are compared whole: in the step only up to this much. */
const FINAL_IN_STEP_MAX_BYTES = 256 * 1024 * 1024;

/**
 * Whether the final comparison is light enough to run in FinishCutover: the tables it must
 * compare in full (not verified while replicating, or changed without a usable key) hold at most
 * FINAL_IN_STEP_MAX_BYTES on the target; the rest is read by changed key.
 */
async function finalComparisonIsLight(spec: MigrationSpec, target: pg.Client): Promise<boolean> {
  if (spec.mode === 'cdc') return false; // it plans no tables: the Compare task lists them
  const tables = (await loadedTables(target, spec.name)).filter((t) => !isLargeObjects(t.source));
  const verified = await readVerifications(target, spec.name);
  const changes = await readTableChanges(target, spec.name);
  const inFull = tables.filter((t) => !verified.get(qualified(t.source))?.matched || changes.get(qualified(t.source))?.wholeLsn);
  if (inFull.length === 0) return true;
  const { rows } = await target.query<{ bytes: string }>(
    `SELECT coalesce(sum(pg_total_relation_size(format('%I.%I', s, n)::regclass)), 0)::text AS bytes
       FROM unnest($1::text[], $2::text[]) AS t(s, n)`,
    [inFull.map((t) => t.target.schema), inFull.map((t) => t.target.name)],
  );
  return Number(rows[0]!.bytes) <= FINAL_IN_STEP_MAX_BYTES;
}

/**
 * Runs the final comparison here when it is light, on connections of its own (FinishCutover runs
 * it beside its other work); returns whether it did (the Compare task runs it otherwise).
 */
export async function finalCompareInStep(spec: MigrationSpec, secrets: SecretsProvider): Promise<boolean> {
  if (!usesCdc(spec) || !spec.compare.enabled || !spec.cutover.finalCompare) return false;
  const connectTarget = () => connectForStep('target', spec, secrets);
  const target = await connectTarget();
  try {
    if (!(await finalComparisonIsLight(spec, target))) return false;
    const notes: string[] = [];
    await compareStep(
      { migration: spec.name, spec, connectSource: () => connectForStep('source', spec, secrets), connectTarget, log: (message) => notes.push(message) },
      { live: false },
    );
    const summary = notes.find((note) => note.startsWith('final comparison'));
    if (summary) await recordEvent(target, spec.name, 'info', `${summary} (in FinishCutover)`);
    return true;
  } finally {
    await target.end();
  }
}

/** The drill's checks after cutover: rows lost and duplicated, full reloads, slots left, processes left. */
import { sleep } from '../../../engine/sql.js';
import type { LocalCluster } from '../cluster.js';
import { compareDatabases, type TableComparison } from './compare.js';
import { drillProcesses } from './processes.js';
import type { ReloadBaseline, ReloadCheck } from './reloads.js';

export interface Verdict {
  tables: TableComparison[];
  rowsLost: number;
  rowsDuplicated: number;
  rowsDifferent: number;
  reloads: ReloadCheck;
  slotsLeft: string[];
  processesLeft: string[];
}

async function slotsOnSource(source: LocalCluster): Promise<string[]> {
  const [result] = await source.sql("SELECT slot_name FROM pg_replication_slots WHERE slot_name LIKE 'pgferry%'");
  return result!.rows.map((row: { slot_name: string }) => row.slot_name);
}

/** The drill's pgferry processes still there after up to `graceMs` (a task may take a few seconds to close what it has open). */
async function processesLeft(drillId: string, graceMs: number): Promise<string[]> {
  const deadline = Date.now() + graceMs;
  let left = drillProcesses(drillId);
  while (left.length > 0 && Date.now() < deadline) {
    await sleep(1_000);
    left = drillProcesses(drillId);
  }
  return left.map(({ pid, cmdline }) => `${pid} ${cmdline.slice(0, 80)}`);
}

export async function verify(source: LocalCluster, target: LocalCluster, baseline: ReloadBaseline, drillId: string): Promise<Verdict> {
  const tables = await compareDatabases(source, target);
  const sum = (field: 'lost' | 'duplicated' | 'different') => tables.reduce((total, table) => total + table[field], 0);
  return {
    tables,
    rowsLost: sum('lost'),
    rowsDuplicated: sum('duplicated'),
    rowsDifferent: sum('different'),
    reloads: await baseline.check(target),
    slotsLeft: await slotsOnSource(source),
    processesLeft: await processesLeft(drillId, 30_000),
  };
}

/** Whether every check passed (the faults are judged apart). */
export function verdictPassed(verdict: Verdict): boolean {
  return (
    verdict.rowsLost === 0 &&
    verdict.rowsDuplicated === 0 &&
    verdict.rowsDifferent === 0 &&
    verdict.tables.every((table) => table.sameHash) &&
    verdict.reloads.reloaded.length === 0 &&
    verdict.slotsLeft.length === 0 &&
    verdict.processesLeft.length === 0
  );
}

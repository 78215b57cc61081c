/** The drill's printout: the table of faults, the tables compared, and the summary line. */
import type { FaultResult } from './context.js';
import { TRUNCATED_BY_WORKLOAD } from './reloads.js';
import type { Verdict } from './verify.js';

function table(header: string[], rows: string[][]): string {
  const widths = header.map((title, column) => Math.max(title.length, ...rows.map((row) => (row[column] ?? '').length)));
  const line = (cells: string[]) => cells.map((cell, column) => cell.padEnd(widths[column]!)).join(' | ').trimEnd();
  return [line(header), widths.map((width) => '-'.repeat(width)).join('-|-'), ...rows.map(line)].join('\n');
}

export function faultTable(results: FaultResult[]): string {
  return table(
    ['fault', 'recovered', 'time to recover (s)', 'notes'],
    results.map((result) => [result.fault, result.skipped ? 'skipped' : result.recovered ? 'yes' : 'no', result.seconds === undefined ? '-' : String(result.seconds), result.notes.join('; ')]),
  );
}

export function comparisonTable(verdict: Verdict): string {
  return table(
    ['table', 'source rows', 'target rows', 'lost', 'duplicated', 'different', 'sorted hash'],
    verdict.tables.map((t) => [t.table, String(t.sourceRows), String(t.targetRows), String(t.lost), String(t.duplicated), String(t.different), t.sameHash ? 'equal' : 'DIFFERS']),
  );
}

/** recoveries n/n, rows lost, rows duplicated, full reloads, slots left (— when the run never got that far). */
export function summaryLine(results: FaultResult[], planned: number, verdict: Verdict | undefined): string {
  const recovered = results.filter((result) => result.recovered).length;
  const value = (pick: (verdict: Verdict) => number) => (verdict ? String(pick(verdict)) : '—');
  return (
    `recoveries ${recovered}/${planned}, rows lost ${value((v) => v.rowsLost)}, rows duplicated ${value((v) => v.rowsDuplicated)}, ` +
    `full reloads ${value((v) => v.reloads.reloaded.length)}, slots left ${value((v) => v.slotsLeft.length)}`
  );
}

/** What else failed, one line each: differing rows or hashes, which tables were reloaded, slots and processes left. */
export function verdictNotes(verdict: Verdict): string[] {
  const { tablesChecked, unitsChecked } = verdict.reloads;
  return [
    `full reloads: the target relfilenodes of ${tablesChecked} tables loaded by the first run (${TRUNCATED_BY_WORKLOAD.join(', ')}, which the workload truncates, by its units only) and ${unitsChecked} units of pgferry.units compared with the first run's`,
    ...(verdict.rowsDifferent ? [`rows different: ${verdict.rowsDifferent}`] : []),
    ...verdict.tables.filter((t) => !t.sameHash).map((t) => `${t.table}: source and target differ`),
    ...(verdict.reloads.reloaded.length ? [`reloaded: ${verdict.reloads.reloaded.join(', ')} (${verdict.reloads.unitsRecopied} units copied again)`] : []),
    ...(verdict.slotsLeft.length ? [`slots left: ${verdict.slotsLeft.join(', ')}`] : []),
    ...verdict.processesLeft.map((p) => `process left: ${p}`),
  ];
}

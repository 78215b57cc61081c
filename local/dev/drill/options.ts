/** The drill's command-line options (`npm run drill -- --help`). */
import { parseArgs } from 'node:util';

/** The faults the drill injects, in this order. */
export const FAULTS = ['target-outage', 'source-restart', 'ddl', 'replicate-kills', 'runner-kill', 'conflict'] as const;
export type FaultId = (typeof FAULTS)[number];

export interface DrillOptions {
  /** cdc.retryWindowMinutes of the drill's spec. */
  retryWindowMinutes: number;
  /** How long the target is down in the target outage. */
  outageSeconds: number;
  /** pgbench's rate (-R), transactions per second. */
  pgbenchRate: number;
  /** The workload generator's rate (updates and deletes on the keyless and TOASTed tables, among others). */
  workloadRate: number;
  /** Recovered means streaming again with the lag under this. */
  lagBoundSeconds: number;
  /** How long a fault may take to recover before it counts as not recovered. */
  recoveryTimeoutSeconds: number;
  /** Faults left out. */
  skip: FaultId[];
}

export const DRILL_HELP = `npm run drill -- [options]

A fault drill on one live full+cdc migration (PostgreSQL 15 → 17) under pgbench load, driven
through the pgferry command line. It injects, in turn: ${FAULTS.join(', ')}; then cuts over
and checks rows lost 0, rows duplicated 0, full reloads 0, slots left 0, no process left.

  --retry-window MINUTES     cdc.retryWindowMinutes of the spec (default 2)
  --outage SECONDS           how long the target is down (default 90)
  --rate TPS                 pgbench's rate (default 100)
  --workload-rate TPS        the workload generator's rate (default 30)
  --lag-bound SECONDS        recovered = streaming with lag under this (default 15)
  --recovery-timeout SECONDS how long a fault may take to recover (default 420)
  --skip FAULT[,FAULT]       leave faults out (${FAULTS.join(', ')})
`;

function numberOption(value: string | undefined, fallback: number, name: string): number {
  if (value === undefined) return fallback;
  const parsed = Number(value);
  if (!Number.isFinite(parsed) || parsed <= 0) throw new Error(`--${name} must be a positive number, got "${value}"`);
  return parsed;
}

function skipped(value: string | undefined): FaultId[] {
  const names = (value ?? '').split(',').map((name) => name.trim()).filter(Boolean);
  const unknown = names.find((name) => !(FAULTS as readonly string[]).includes(name));
  if (unknown) throw new Error(`--skip: unknown fault "${unknown}"; the faults are ${FAULTS.join(', ')}`);
  return names as FaultId[];
}

/** The options, or 'help' when the usage was asked for. */
export function parseDrillOptions(argv: string[]): DrillOptions | 'help' {
  const { values } = parseArgs({
    args: argv,
    options: {
      help: { type: 'boolean', short: 'h' },
      'retry-window': { type: 'string' },
      outage: { type: 'string' },
      rate: { type: 'string' },
      'workload-rate': { type: 'string' },
      'lag-bound': { type: 'string' },
      'recovery-timeout': { type: 'string' },
      skip: { type: 'string' },
    },
  });
  if (values.help) return 'help';
  return {
    retryWindowMinutes: numberOption(values['retry-window'], 2, 'retry-window'),
    outageSeconds: numberOption(values.outage, 90, 'outage'),
    pgbenchRate: numberOption(values.rate, 100, 'rate'),
    workloadRate: numberOption(values['workload-rate'], 30, 'workload-rate'),
    lagBoundSeconds: numberOption(values['lag-bound'], 15, 'lag-bound'),
    recoveryTimeoutSeconds: numberOption(values['recovery-timeout'], 420, 'recovery-timeout'),
    skip: skipped(values.skip),
  };
}

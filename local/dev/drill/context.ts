/** What every part of the drill works with: the clusters, the migration, the command line and the options. */
import type { LocalCluster } from '../cluster.js';
import type { DrillOptions } from './options.js';
import type { FollowedRun, PgferryCli } from './pgferry.js';

export interface DrillContext {
  source: LocalCluster;
  target: LocalCluster;
  /** The migration's name (spec.name). */
  name: string;
  /** The id in the environment of every pgferry process the drill starts (processes.ts). */
  drillId: string;
  cli: PgferryCli;
  options: DrillOptions;
  /** Aborted on Ctrl-C or SIGTERM: every wait ends. */
  signal: AbortSignal;
  /** Every `pgferry run|resume` started, the latest last. */
  runs: FollowedRun[];
  say(line: string): void;
  /** The drill rewrote this table itself (ALTER TYPE): its relfilenode on the target is taken again as the one a reload would change. */
  rewrote(table: string): Promise<void>;
}

/** One fault's outcome, a row of the drill's table. */
export interface FaultResult {
  fault: string;
  recovered: boolean;
  /** Left out with --skip: neither a recovery nor a failure. */
  skipped?: boolean;
  /** Seconds from the end of the injection until streaming again with the lag under the bound. */
  seconds?: number;
  notes: string[];
}

/**
 * The drill's write load on the source, kept going through the faults: pgbench (TPC-B, -R) and
 * the workload generator (local/dev/workload.ts: among others, updates and deletes on the
 * keyless table and on the TOASTed one). Each is started again when a fault ends it (a source
 * restart ends their sessions), until the drill stops the load before cutover.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import { sleep } from '../../../engine/sql.js';
import type { LocalCluster } from '../cluster.js';
import { startWorkload, type RunningWorkload } from '../workload.js';
import { DRILL_DATABASE } from './setup.js';

/** pgbench of the Debian PostgreSQL 15 packages, else of any installed major; undefined when there is none. */
export function findPgbench(): string | undefined {
  const preferred = '/usr/lib/postgresql/15/bin/pgbench';
  if (existsSync(preferred)) return preferred;
  const majors = existsSync('/usr/lib/postgresql') ? readdirSync('/usr/lib/postgresql') : [];
  return majors.map((major) => `/usr/lib/postgresql/${major}/bin/pgbench`).find((path) => existsSync(path));
}

export interface LoadStats {
  pgbenchTransactions: number;
  workloadTransactions: number;
  /** How often pgbench or the workload was started again after a fault ended it. */
  restarts: number;
}

export interface DrillLoad {
  /** What runs: pgbench and the workload, or the workload alone when pgbench is missing. */
  readonly description: string;
  stop(): Promise<LoadStats>;
}

class Load implements DrillLoad {
  readonly description: string;
  #stopped = false;
  #pgbench: ChildProcess | undefined;
  #workload: RunningWorkload | undefined;
  readonly #stats: LoadStats = { pgbenchTransactions: 0, workloadTransactions: 0, restarts: 0 };
  readonly #loops: Promise<void>[];

  constructor(
    private readonly source: LocalCluster,
    pgbenchRate: number,
    workloadRate: number,
  ) {
    const pgbench = findPgbench();
    this.description = pgbench
      ? `pgbench -R ${pgbenchRate} (${pgbench}) and the workload generator at ${workloadRate} transactions/s`
      : `the workload generator at ${pgbenchRate + workloadRate} transactions/s (pgbench is not installed)`;
    this.#loops = [this.#keepWorkload(pgbench ? workloadRate : pgbenchRate + workloadRate)];
    if (pgbench) this.#loops.push(this.#keepPgbench(pgbench, pgbenchRate));
  }

  async #keepPgbench(binary: string, rate: number): Promise<void> {
    for (let first = true; !this.#stopped; first = false) {
      if (!first) this.#stats.restarts++;
      this.#stats.pgbenchTransactions += await this.#runPgbench(binary, rate);
      if (!this.#stopped) await sleep(2_000);
    }
  }

  /** One pgbench until it ends (stopped, or all its clients aborted by a fault); the transactions it processed. */
  #runPgbench(binary: string, rate: number): Promise<number> {
    const { host, port, username, password } = this.source.connection;
    const args = ['-n', '-c', '2', '-j', '1', '-R', String(rate), '-T', '86400', '-h', host, '-p', String(port), '-U', username, DRILL_DATABASE];
    const child = spawn(binary, args, { env: { ...process.env, PGPASSWORD: password }, stdio: ['ignore', 'pipe', 'pipe'] });
    this.#pgbench = child;
    let output = '';
    child.stdout.on('data', (chunk) => (output = (output + chunk).slice(-4_000)));
    child.stderr.on('data', (chunk) => (output = (output + chunk).slice(-4_000)));
    return new Promise((resolve) => {
      const done = () => resolve(Number(/transactions actually processed: (\d+)/.exec(output)?.[1] ?? 0));
      child.once('exit', done);
      child.once('error', done);
    });
  }

  async #keepWorkload(rate: number): Promise<void> {
    for (let round = 0; !this.#stopped; round++) {
      if (round > 0) this.#stats.restarts++;
      this.#workload = startWorkload(() => this.source.connect(DRILL_DATABASE), { clients: 2, ratePerSecond: rate, seed: round + 1 });
      this.#stats.workloadTransactions += (await this.#workload.finished).transactions;
      if (!this.#stopped) await sleep(2_000);
    }
  }

  async stop(): Promise<LoadStats> {
    this.#stopped = true;
    this.#pgbench?.kill('SIGINT');
    await this.#workload?.stop();
    await Promise.all(this.#loops);
    return { ...this.#stats };
  }
}

export function startLoad(source: LocalCluster, options: { pgbenchRate: number; workloadRate: number }): DrillLoad {
  return new Load(source, options.pgbenchRate, options.workloadRate);
}

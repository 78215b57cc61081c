import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { LocalCluster } from '../local/dev/cluster.js';

/** Writes the cluster's credentials for `database` as an RDS-style secret file in `dir`; returns its `file:` reference. */
export function secretFile(dir: string, name: string, cluster: LocalCluster, database: string): string {
  const path = join(dir, `${name}.json`);
  const { host, port, username, password } = cluster.connection;
  writeFileSync(path, JSON.stringify({ host, port, username, password, dbname: database }), { mode: 0o600 });
  return `file:${path}`;
}

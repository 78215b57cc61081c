import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { LocalCluster } from '../../local/cluster.js';

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

/**
 * A local cluster's outage (local/dev/cluster.ts, used by `npm run drill`): stopServer() stops
 * the server but keeps its data, startServer() brings it back on the same port, and stop()
 * still removes it for good.
 */
import { existsSync } from 'node:fs';
import { afterAll, describe, expect, it } from 'vitest';
import { startCluster, type LocalCluster } from '../../local/dev/cluster.js';

let cluster: LocalCluster | undefined;

afterAll(async () => {
  await cluster?.stop();
});

describe('a local cluster outage', () => {
  it('stops the server keeping its data, starts it again on the same port, and stop() still removes it', async () => {
    cluster = await startCluster({ major: 17, label: 'outage' });
    await cluster.sql("CREATE TABLE kept (id int PRIMARY KEY, note text); INSERT INTO kept VALUES (1, 'before the outage')");
    const { port } = cluster.connection;

    await cluster.stopServer();
    await expect(cluster.sql('SELECT 1')).rejects.toThrow(/ECONNREFUSED/);

    await cluster.startServer();
    expect(cluster.connection.port).toBe(port);
    const [result] = await cluster.sql('SELECT id, note FROM kept');
    expect(result!.rows).toEqual([{ id: 1, note: 'before the outage' }]);

    const [dir] = await cluster.sql("SELECT setting FROM pg_settings WHERE name = 'data_directory'");
    const dataDirectory = (dir!.rows[0] as { setting: string }).setting;
    await cluster.stop();
    expect(existsSync(dataDirectory)).toBe(false);
    await expect(cluster.startServer()).rejects.toThrow(/stopped for good/);
  });
});

import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startClusters, type LocalCluster } from '../../local/dev/cluster.js';
import { repositoryRoot } from '../../local/runner/index.js';
import { scratchDir } from '../support/clusters.js';

let source: LocalCluster;
let target: LocalCluster;
const scratch = scratchDir('cli-run');

beforeAll(async () => {
  [source, target] = await startClusters([{ major: 15, label: 'cli-source' }, { major: 17, label: 'cli-target' }]);
  await source.sql('CREATE DATABASE app');
  await source.sql(
    `CREATE TABLE items (id int PRIMARY KEY, v text NOT NULL);
     INSERT INTO items SELECT g, 'value ' || g FROM generate_series(1, 5000) g;
     CREATE RULE no_delete AS ON DELETE TO items DO INSTEAD NOTHING;
     CREATE PUBLICATION cli_elsewhere FOR TABLE items;`,
    'app',
  );
});

afterAll(async () => {
  await Promise.all([source, target].map((c) => c?.stop()));
  scratch.remove();
});

function pgferry(...args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [join(repositoryRoot, 'bin', 'pgferry.js'), ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c) => (stdout += c));
    child.stderr.on('data', (c) => (stderr += c));
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

const specFile = (name: string, targetDb: string, extra: object = {}) =>
  scratch.writeJson(`${name}.json`, {
    name,
    source: { secret: scratch.secretFor(`${name}-source`, source), database: 'app' },
    target: { secret: scratch.secretFor(`${name}-target`, target), database: targetDb },
    ...extra,
  });

describe('pgferry run', () => {
  it('migrates, prints the report and writes it as JSON', async () => {
    await target.sql('CREATE DATABASE good');
    const reportFile = join(scratch.dir, 'good-report.json');
    const result = await pgferry('run', specFile('cli-good', 'good'), '--report', reportFile);
    expect(result.stderr).not.toContain('failed');
    expect(result.code).toBe(0);
    expect(result.stdout).toMatch(/public\.items\s+5000\s+.*match/);
    expect(result.stdout).toMatch(/rule\s+1/); // created
    expect(result.stdout).toContain('Not migrated:\n  publication cli_elsewhere: publications are not migrated');
    expect(result.stdout).toContain('Migration succeeded.');
    const { report } = JSON.parse(readFileSync(reportFile, 'utf8'));
    expect(report.tables).toEqual([expect.objectContaining({ table: 'public.items', rows: 5000, compare: 'match', units: 1 })]);
    expect(report.notMigrated).toEqual([{ kind: 'publication', identity: 'cli_elsewhere', detail: 'publications are not migrated' }]);
    expect(JSON.stringify(report)).not.toContain(source.connection.password);
  });

  it('shows no report of an earlier run when a run fails before it registers', async () => {
    // The migration above is done; this run of it cannot reach its source, so Precheck stops it before it registers.
    const spec = scratch.writeJson('cli-good-unreachable.json', {
      name: 'cli-good',
      source: { secret: scratch.secretFor('cli-good-nowhere', source, { port: 1 }), database: 'app' },
      target: { secret: scratch.secretFor('cli-good-target', target), database: 'good' },
    });
    const result = await pgferry('run', spec);
    expect(result.code).toBe(1);
    expect(result.stderr).toContain('Migration failed');
    expect(result.stdout).not.toMatch(/public\.items\s+5000/);
  });

  it('exits 1 naming the table and the keys when the comparison finds differences', async () => {
    // A trigger enabled ALWAYS fires even for replicated rows: it corrupts one row during the load.
    await target.sql('CREATE DATABASE corrupted');
    await target.sql(
      `CREATE TABLE items (id int PRIMARY KEY, v text NOT NULL);
       CREATE FUNCTION corrupt() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN IF NEW.id = 4242 THEN NEW.v := 'oops'; END IF; RETURN NEW; END $$;
       CREATE TRIGGER corrupt BEFORE INSERT ON items FOR EACH ROW EXECUTE FUNCTION corrupt();
       ALTER TABLE items ENABLE ALWAYS TRIGGER corrupt;`,
      'corrupted',
    );
    const reportFile = join(scratch.dir, 'bad-report.json');
    const result = await pgferry('run', specFile('cli-corrupted', 'corrupted', { schema: { existingTables: 'ignore' } }), '--report', reportFile);
    expect(result.code).toBe(1);
    expect(result.stderr).toContain('Migration failed (pgferry.CompareMismatch)');
    expect(result.stderr).toContain('public.items');
    expect(result.stderr).toContain('different: id=4242');
    expect(result.stdout).toMatch(/public\.items\s+5000\s+.*MISMATCH \(1\)/);
    const saved = JSON.parse(readFileSync(reportFile, 'utf8'));
    expect(saved.status).toBe('FAILED');
    expect(saved.report.tables[0]).toMatchObject({ compare: 'mismatch', differences: 1 });
  });
});

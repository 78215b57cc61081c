/**
 * The fidelity fixture of issue 13 (test/fixtures/fidelity/*.sql): a database with every object
 * kind and edge value, built for a given PostgreSQL major, its CDC change script, and the tests'
 * own oracles to compare a source with its target: pg_dump's schema (servers ≤ 15 only), every
 * table's, materialized view's and large object's contents, and sequence positions.
 */
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type pg from 'pg';
import { to as copyTo } from 'pg-copy-streams';
import type { LocalCluster } from '../../local/dev/cluster.js';
import { withClient } from './clusters.js';

const FIXTURE_DIR = join(dirname(fileURLToPath(import.meta.url)), '..', 'fixtures', 'fidelity');

/** The roles the fixture grants to and gives objects to (cluster-wide: created once per cluster). */
export const FIDELITY_ROLES = ['fid_owner', 'fid_reader', 'Fid "Writer"'];

export interface FidelityVariant {
  /** The CDC variant leaves out what a CDC run must refuse (unlogged tables, a DEFERRABLE primary key). */
  cdc?: boolean;
}

/**
 * Keeps the lines of a fixture file that exist on `major`: "-- @since N" … "-- @end" from major N
 * on, "-- @full" … "-- @end" outside the CDC variant.
 */
export function conditional(text: string, major: number, variant: FidelityVariant = {}): string {
  const kept: string[] = [];
  let open: string | undefined;
  let keep = true;
  for (const [index, line] of text.split('\n').entries()) {
    const marker = /^-- @(since (\d+)|full|end)\s*$/.exec(line);
    if (!marker) {
      if (keep) kept.push(line);
      continue;
    }
    if ((marker[1] === 'end') !== (open !== undefined)) throw new Error(`fixture line ${index + 1}: "${line}" ${open ? `inside "${open}"` : 'without a block to end'}`);
    open = marker[1] === 'end' ? undefined : line;
    keep = marker[1] === 'end' ? true : marker[1] === 'full' ? !variant.cdc : major >= Number(marker[2]);
  }
  if (open) throw new Error(`fixture block "${open}" has no "-- @end"`);
  return kept.join('\n');
}

const fixtureFile = (name: string) => readFileSync(join(FIXTURE_DIR, name), 'utf8');

/** The fixture's DDL for a source of `major`. */
export const fidelitySchemaSql = (major: number, variant: FidelityVariant = {}) => conditional(fixtureFile('schema.sql'), major, variant);

/** The fixture's rows, large objects and after-data statements for a source of `major`. */
export const fidelityDataSql = (major: number, variant: FidelityVariant = {}) => conditional(fixtureFile('data.sql'), major, variant);

/** The CDC change script as its transactions, in order: `name` is the step's title. */
export function fidelityChangeSteps(major: number): { name: string; sql: string }[] {
  const steps: { name: string; sql: string }[] = [];
  for (const line of conditional(fixtureFile('changes.sql'), major).split('\n')) {
    const step = /^-- @step (.+)$/.exec(line);
    if (step) steps.push({ name: step[1]!, sql: '' });
    else if (steps.length > 0 && line.trim() !== '' && !line.startsWith('--')) steps.at(-1)!.sql += line + '\n';
  }
  return steps;
}

const quoteIdent = (name: string) => `"${name.replace(/"/g, '""')}"`;
const quoteLiteral = (value: string) => `'${value.replace(/'/g, "''")}'`;

/** Creates the fixture's roles on the cluster unless they exist. */
export async function createFidelityRoles(cluster: LocalCluster): Promise<void> {
  const statements = FIDELITY_ROLES.map(
    (role) => `IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = ${quoteLiteral(role)}) THEN CREATE ROLE ${quoteIdent(role)} NOLOGIN; END IF;`,
  );
  await cluster.sql(`DO $$ BEGIN ${statements.join(' ')} END $$`);
}

/** Creates `database` on the cluster with the fixture's roles, schema and data. */
export async function createFidelityDatabase(cluster: LocalCluster, database: string, variant: FidelityVariant = {}): Promise<void> {
  await createFidelityRoles(cluster);
  await cluster.sql(`CREATE DATABASE ${quoteIdent(database)}`);
  await cluster.sql(fidelitySchemaSql(cluster.major, variant), database);
  await cluster.sql(fidelityDataSql(cluster.major, variant), database);
}

/** Runs the change script on the source, one transaction per step; a failing step names itself. */
export async function runFidelityChanges(cluster: LocalCluster, database: string): Promise<void> {
  await withClient(cluster, database, async (client) => {
    for (const step of fidelityChangeSteps(cluster.major)) {
      try {
        await client.query(`BEGIN; ${step.sql} COMMIT;`);
      } catch (error) {
        await client.query('ROLLBACK').catch(() => undefined);
        throw new Error(`change step "${step.name}" failed on the source: ${(error as Error).message}`);
      }
    }
  });
}

/**
 * The schema of `database` as pg_dump 15 prints it (owners, privileges, comments and all), the
 * control schemas left out, pg_dump's per-run \restrict key stripped, as sorted lines (empty lines
 * and bare "--" separators dropped: their count only follows the number of objects).
 * Only for servers up to 15: /usr/bin/pg_dump is PostgreSQL 15.
 */
export function pgDumpSchemaLines(cluster: LocalCluster, database: string): string[] {
  if (cluster.major > 15) throw new Error(`pg_dump 15 cannot dump PostgreSQL ${cluster.major}: compare by catalog instead`);
  const { host, port, username, password } = cluster.connection;
  const result = spawnSync(
    '/usr/bin/pg_dump',
    ['--schema-only', '--exclude-schema=pgferry', '--exclude-schema=pgferry_capture', '-h', host, '-p', String(port), '-U', username, '-d', database],
    { env: { ...process.env, PGPASSWORD: password }, encoding: 'utf8', maxBuffer: 64 * 1024 * 1024 },
  );
  if (result.status !== 0) throw new Error(`pg_dump ${database} failed: ${result.stderr}`);
  return result.stdout
    .split('\n')
    .filter((line) => !/^\s*(--)?\s*$/.test(line) && !/^\\(un)?restrict /.test(line) && !line.startsWith('-- Dumped '))
    .sort();
}

/**
 * Copies `sourceDb` into the existing `targetDb` the way pg_dump 15 does (schema, data and large
 * objects, piped into psql 15, which goes on past errors): the tests' check that their oracles see
 * only what pg_dump cannot carry. Returns psql's errors.
 */
export function pgDumpRestore(source: LocalCluster, sourceDb: string, target: LocalCluster, targetDb: string): string[] {
  if (source.major > 15) throw new Error(`pg_dump 15 cannot dump PostgreSQL ${source.major}`);
  const client = (cluster: LocalCluster) => ['-h', cluster.connection.host, '-p', String(cluster.connection.port), '-U', cluster.connection.username];
  const options = { encoding: 'utf8' as const, maxBuffer: 256 * 1024 * 1024 };
  const dump = spawnSync('/usr/bin/pg_dump', [...client(source), '-d', sourceDb], { ...options, env: { ...process.env, PGPASSWORD: source.connection.password } });
  if (dump.status !== 0) throw new Error(`pg_dump ${sourceDb} failed: ${dump.stderr}`);
  const restore = spawnSync('/usr/bin/psql', [...client(target), '-d', targetDb, '-q', '-X'], {
    ...options,
    input: dump.stdout,
    env: { ...process.env, PGPASSWORD: target.connection.password },
  });
  if (restore.status !== 0) throw new Error(`psql into ${targetDb} failed: ${restore.stderr}`);
  return restore.stderr.split('\n').filter((line) => line.startsWith('ERROR:'));
}

/** Lines of `a` not matched in `b` and the reverse, each list sorted (a multiset difference). */
export function lineDifferences(source: string[], target: string[]): { onlyInSource: string[]; onlyInTarget: string[] } {
  const counts = new Map<string, number>();
  for (const line of source) counts.set(line, (counts.get(line) ?? 0) + 1);
  const onlyInTarget: string[] = [];
  for (const line of target) {
    const left = counts.get(line) ?? 0;
    if (left > 0) counts.set(line, left - 1);
    else onlyInTarget.push(line);
  }
  const onlyInSource = [...counts].flatMap(([line, n]) => Array<string>(n).fill(line));
  return { onlyInSource: onlyInSource.sort(), onlyInTarget: onlyInTarget.sort() };
}

/** Same text output on every server: floats exact, dates ISO, reg* names qualified unless in pg_catalog. */
const SETTINGS =
  "SET extra_float_digits = 3; SET DateStyle = 'ISO, YMD'; SET IntervalStyle = 'postgres'; SET TimeZone = 'UTC'; SET bytea_output = 'hex'; SET search_path = ''; SET lc_monetary = 'C'";
const USER_SCHEMAS = "n.nspname NOT IN ('pg_catalog', 'information_schema', 'pgferry', 'pgferry_capture') AND n.nspname NOT LIKE 'pg\\_toast%' AND n.nspname NOT LIKE 'pg\\_temp%'";

/** A relation's rows as COPY text lines, sorted: its fingerprint is the row count, bytes and sha256; `sample` keeps the first lines (shortened) to show a difference. */
export interface RowsDigest {
  rows: number;
  sha256: string;
  sample: string[];
}

async function copyLines(client: pg.Client, sql: string): Promise<string[]> {
  const chunks: Buffer[] = [];
  for await (const chunk of client.query(copyTo(sql))) chunks.push(chunk as Buffer);
  const text = Buffer.concat(chunks).toString('utf8');
  return text === '' ? [] : text.replace(/\n$/, '').split('\n');
}

function digest(lines: string[]): RowsDigest {
  const sorted = [...lines].sort();
  const hash = createHash('sha256');
  for (const line of sorted) hash.update(line + '\n');
  return { rows: sorted.length, sha256: hash.digest('hex'), sample: sorted.map((l) => (l.length > 200 ? `${l.slice(0, 200)}… (${l.length} chars)` : l)) };
}

/**
 * The data of every user table (ONLY: inheritance parents without their children; every leaf
 * partition on its own), every materialized view (or that it is not populated), every large
 * object (owner, ACL, comment, size and md5 of its contents) and every sequence position.
 */
export async function fidelityData(client: pg.Client): Promise<Record<string, unknown>> {
  await client.query(SETTINGS);
  const { rows: relations } = await client.query<{ rel: string; relkind: string; populated: boolean }>(
    `SELECT format('%I.%I', n.nspname, c.relname) AS rel, c.relkind, c.relispopulated AS populated
       FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
      WHERE c.relkind IN ('r', 'm') AND ${USER_SCHEMAS} ORDER BY 1`,
  );
  const data: Record<string, unknown> = {};
  for (const { rel, relkind, populated } of relations) {
    if (relkind === 'm' && !populated) {
      data[rel] = 'materialized view not populated';
      continue;
    }
    data[rel] = digest(await copyLines(client, `COPY (SELECT * FROM ONLY ${rel}) TO STDOUT`));
  }
  const { rows: objects } = await client.query(
    `SELECT l.oid::text AS oid, pg_get_userbyid(l.lomowner) AS owner, l.lomacl::text AS acl, obj_description(l.oid, 'pg_largeobject') AS comment,
            length(lo_get(l.oid)) AS bytes, md5(lo_get(l.oid)) AS md5
       FROM pg_largeobject_metadata l ORDER BY l.oid`,
  );
  data['large objects'] = objects;
  const { rows: sequences } = await client.query<{ seq: string }>(
    `SELECT format('%I.%I', schemaname, sequencename) AS seq FROM pg_sequences WHERE schemaname NOT IN ('pgferry', 'pgferry_capture') ORDER BY 1`,
  );
  // Read from the sequence itself: pg_sequences shows no last_value once setval(…, false) reset is_called.
  data.sequences = [];
  for (const { seq } of sequences) {
    const { rows } = await client.query(`SELECT last_value::text, is_called FROM ${seq}`);
    (data.sequences as unknown[]).push({ seq, ...rows[0] });
  }
  return data;
}

/** fidelityData of one of the cluster's databases. */
export const fidelityDataOf = (cluster: LocalCluster, database: string) => withClient(cluster, database, fidelityData);

/** The names whose data differ (or exist on one side only), with both sides' digests: readable in a failed expectation. */
export function dataDifferences(source: Record<string, unknown>, target: Record<string, unknown>): Record<string, { source: unknown; target: unknown }> {
  const differences: Record<string, { source: unknown; target: unknown }> = {};
  for (const name of new Set([...Object.keys(source), ...Object.keys(target)])) {
    const [s, t] = [source[name], target[name]];
    if (JSON.stringify(strip(s)) === JSON.stringify(strip(t))) continue;
    differences[name] = { source: shorten(s, t), target: shorten(t, s) };
  }
  return differences;
}

const strip = (value: unknown) => (value && typeof value === 'object' && 'sha256' in value ? { ...(value as RowsDigest), sample: undefined } : value);

/** A digest shown with only the lines the other side lacks (at most 10). */
function shorten(value: unknown, other: unknown): unknown {
  if (!value || typeof value !== 'object' || !('sample' in value)) return value;
  const mine = value as RowsDigest;
  const theirs = other && typeof other === 'object' && 'sample' in other ? new Set((other as RowsDigest).sample) : new Set<string>();
  return { rows: mine.rows, lines: mine.sample.filter((l) => !theirs.has(l)).slice(0, 10) };
}

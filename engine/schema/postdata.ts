/**
 * Post-data, once the rows are in: secondary indexes and unique/check/exclusion constraints
 * (several at once), domains' NOT VALID checks, foreign keys (added NOT VALID, then validated against the loaded rows),
 * triggers with their enabled state, materialized view refreshes, ANALYZE. Re-runnable:
 * whatever already exists on the target is left alone and reported 'existing'.
 */
import type pg from 'pg';
import { type TableRef } from '../catalog/tables.js';
import { quoteTable } from '../sql.js';
import { serverVersion } from '../connect/index.js';
import { indexJobStates } from '../control/index.js';
import type { MigrationSpec } from '../spec/index.js';
import { planSchema, type SchemaPlan } from './plan.js';
import { ENABLE, FIRES_AS_REPLICA } from './replica-triggers.js';
import { deferDomainChecksToCutover, domainChecksAwaitingCutover, notValidDomainChecks } from './domain-checks.js';
import {
  inParallel,
  readSource,
  runFor,
  TARGET_SETTINGS,
  type SchemaObjectResult,
} from './objects.js';
import { createPolicies, createRules, createStatistics, readSecurityCatalog, setRowSecurity, type SecurityCatalog } from './security.js';
import { setComments } from './comments.js';
import { setOwnersAndPrivileges } from './privileges.js';
import { droppedDetail, droppedParams, ON_DROPPED, type DroppedColumn } from './dropped-columns.js';

export interface PostDataResult {
  objects: SchemaObjectResult[];
}

interface Job {
  kind: string;
  identity: string;
  sql: string[];
  action?: string;
}

// An index on a partitioned table is printed `ON ONLY` (pg_dump attaches the partitions' one by one); created without it, it cascades.
const ON_ONLY = /^(CREATE (?:UNIQUE )?INDEX (?:"(?:[^"]|"")*"|\S+) ON )ONLY /;

async function readCatalog(source: pg.Client, relations: number[], dropped: DroppedColumn[]) {
  const params = [relations, ...droppedParams(dropped)];
  const { rows: indexes } = await source.query(
    `SELECT format('%I.%I', n.nspname, ic.relname) AS identity, quote_ident(ic.relname) AS name,
            format('%I.%I', tn.nspname, tc.relname) AS table_identity, pg_get_indexdef(x.indexrelid) AS def,
            tn.nspname AS table_schema, tc.relname AS table_name, tc.relkind = 'r' AND NOT tc.relispartition AS plain_table,
            x.indisvalid AS valid, x.indisclustered AS clustered, x.indisreplident AS replident,
            EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conindid = x.indexrelid AND k.contype IN ('p', 'u', 'x')) AS by_constraint,
            EXISTS (SELECT 1 FROM pg_inherits i WHERE i.inhrelid = x.indexrelid) AS inherited,
            ARRAY(SELECT format('ALTER INDEX %I.%I ALTER COLUMN %s SET STATISTICS %s', n.nspname, ic.relname, a.attnum, a.attstattarget)
                    FROM pg_attribute a WHERE a.attrelid = x.indexrelid AND a.attstattarget >= 0 ORDER BY a.attnum) AS statistics,
            ${ON_DROPPED('pg_class', 'x.indexrelid', 2)} AS on_dropped
       FROM pg_index x JOIN pg_class ic ON ic.oid = x.indexrelid JOIN pg_namespace n ON n.oid = ic.relnamespace
       JOIN pg_class tc ON tc.oid = x.indrelid JOIN pg_namespace tn ON tn.oid = tc.relnamespace
      WHERE x.indrelid = ANY($1::oid[])
      ORDER BY (SELECT sum(pg_relation_size(p.relid)) FROM pg_partition_tree(x.indrelid) p) DESC NULLS LAST, 1`,
    params,
  );
  const { rows: constraints } = await source.query(
    `SELECT format('%I.%I.%I', n.nspname, c.relname, k.conname) AS identity, quote_ident(k.conname) AS name,
            format('%I.%I', n.nspname, c.relname) AS table_identity, c.relkind::text AS relkind, k.contype::text AS contype,
            n.nspname AS table_schema, c.relname AS table_name, c.relkind = 'r' AND NOT c.relispartition AS plain_table,
            pg_get_constraintdef(k.oid) AS def, k.convalidated AS validated, k.confrelid::int AS ref_oid, r.relkind::text AS ref_relkind,
            CASE WHEN r.oid IS NOT NULL THEN format('%I.%I', rn.nspname, r.relname) END AS ref_identity,
            ${ON_DROPPED('pg_constraint', 'k.oid', 2)} AS on_dropped
       FROM pg_constraint k JOIN pg_class c ON c.oid = k.conrelid JOIN pg_namespace n ON n.oid = c.relnamespace
       LEFT JOIN pg_class r ON r.oid = k.confrelid LEFT JOIN pg_namespace rn ON rn.oid = r.relnamespace
      WHERE k.conrelid = ANY($1::oid[]) AND k.contype IN ('p', 'u', 'c', 'x', 'f') AND k.conparentid = 0 AND k.conislocal
        AND NOT (k.contype = 'c' AND k.coninhcount > 0) -- a child's own copy of an inherited check comes with its table
      ORDER BY 1`,
    params,
  );
  const { rows: triggers } = await source.query(
    `SELECT format('%I.%I.%I', n.nspname, c.relname, t.tgname) AS identity, quote_ident(t.tgname) AS name,
            format('%I.%I', n.nspname, c.relname) AS table_identity, c.relkind::text AS relkind,
            pg_get_triggerdef(t.oid) AS def, t.tgenabled::text AS enabled, ${ON_DROPPED('pg_trigger', 't.oid', 2)} AS on_dropped
       FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid JOIN pg_namespace n ON n.oid = c.relnamespace
      WHERE t.tgrelid = ANY($1::oid[]) AND NOT t.tgisinternal AND t.tgparentid = 0
      ORDER BY 1`,
    params,
  );
  // Objects using columns left out of the target (objects.excludedColumns "drop") cannot be created: they are reported skipped.
  const usable = (row: { on_dropped: string[] }) => row.on_dropped.length === 0;
  const onDropped = [...indexes.map((r) => ({ ...r, kind: 'index' })), ...constraints.map((r) => ({ ...r, kind: r.contype === 'f' ? 'foreign key' : 'constraint' })), ...triggers.map((r) => ({ ...r, kind: 'trigger' }))]
    .filter((r) => !usable(r))
    .map((r) => ({ kind: r.kind as string, identity: r.identity as string, detail: droppedDetail(r.on_dropped) }));
  return { indexes: indexes.filter(usable), constraints: constraints.filter(usable), triggers: triggers.filter(usable), onDropped };
}

async function existingOnTarget(target: pg.Client): Promise<Set<string>> {
  const { rows } = await target.query<{ key: string }>(
    `SELECT 'index ' || format('%I.%I', n.nspname, c.relname) AS key FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
      WHERE c.relkind IN ('i', 'I')
     UNION ALL SELECT 'constraint ' || format('%I.%I.%I', n.nspname, c.relname, k.conname)
       FROM pg_constraint k JOIN pg_class c ON c.oid = k.conrelid JOIN pg_namespace n ON n.oid = c.relnamespace
     UNION ALL SELECT 'trigger ' || format('%I.%I.%I', n.nspname, c.relname, t.tgname)
       FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid JOIN pg_namespace n ON n.oid = c.relnamespace WHERE NOT t.tgisinternal`,
  );
  return new Set(rows.map((r) => r.key));
}

/** An index build or a constraint that touches one table. */
export interface TableJob extends Job {
  table: TableRef;
  /** A plain table (not partitioned, not a partition): a copy worker may run the job once the table's rows are in. */
  plainTable: boolean;
}

type Catalog = Awaited<ReturnType<typeof readCatalog>>;

/** The single-table jobs of post-data: primary keys, then indexes and unique/check/exclusion constraints. */
function singleTableJobs(catalog: Catalog, sync: MigrationSpec['schema']['sync']): [TableJob[], TableJob[]] {
  const job = (row: { table_schema: string; table_name: string; plain_table: boolean }, kind: string, identity: string, ...sql: string[]): TableJob => ({
    kind,
    identity,
    sql,
    table: { schema: row.table_schema, name: row.table_name },
    plainTable: row.plain_table,
  });
  const constraint = (c: Catalog['constraints'][number]) =>
    job(c, 'constraint', c.identity, `ALTER TABLE ${c.table_identity} ADD CONSTRAINT ${c.name} ${c.def}`);
  const keys = catalog.constraints.filter((c) => c.contype === 'p').map(constraint);
  const others = [
    ...catalog.indexes
      .filter((i) => i.valid && !i.by_constraint && !i.inherited && sync.indexes)
      .map((i) => job(i, 'index', i.identity, i.def.replace(ON_ONLY, '$1'), ...i.statistics)),
    ...catalog.constraints.filter((c) => c.contype !== 'f' && c.contype !== 'p' && sync.constraints).map(constraint),
  ];
  return [keys, others];
}

/**
 * The jobs a copy worker may run as soon as a plain table's rows are in, in the order post-data
 * would run them; post-data runs whatever the load did not.
 */
export async function loadTimeIndexJobs(source: pg.Client, spec: MigrationSpec): Promise<TableJob[]> {
  const { plan, catalog } = await readSource(source, async () => {
    const plan = await planSchema(source, spec);
    return { plan, catalog: await readCatalog(source, plan.tables.map((t) => t.oid), plan.dropped) };
  });
  const [keys, others] = singleTableJobs(catalog, spec.schema.sync);
  // Statistics last, once the table's indexes exist (expression indexes have statistics of their own).
  const analyze = plan.tables
    .filter((t) => t.kind === 'table' && !t.root)
    .map((t): TableJob => ({ kind: 'analyze', identity: quoteTable(t), sql: [`ANALYZE ${quoteTable(t)}`], table: t, plainTable: true }));
  return [...keys, ...others, ...analyze].filter((job) => job.plainTable);
}



export async function migratePostData(
  sourceConnect: () => Promise<pg.Client>,
  targetConnect: () => Promise<pg.Client>,
  spec: MigrationSpec,
  options: { parallelism?: number } = {},
): Promise<PostDataResult> {
  return (await postData(sourceConnect, targetConnect, spec, { parallelism: options.parallelism ?? 2, mayRun: true }))!;
}

/**
 * Post-data when the load left it nothing to run (every index and constraint was built as its
 * table was loaded, and there are no foreign keys, triggers or views to refresh): its objects,
 * to report. Undefined as soon as one statement would have to run: that is the post-data
 * task's work, which has no time limit.
 */
export async function postDataLeftNothing(
  sourceConnect: () => Promise<pg.Client>,
  targetConnect: () => Promise<pg.Client>,
  spec: MigrationSpec,
): Promise<PostDataResult | undefined> {
  return postData(sourceConnect, targetConnect, spec, { parallelism: 1, mayRun: false });
}

class StatementsLeft extends Error {}

/** What the post-data steps share on the target: how to report an object, decide to create it, and run statements. */
export interface PostDataRun {
  target: pg.Client;
  sync: MigrationSpec['schema']['sync'];
  /** ENABLE ALWAYS/REPLICA triggers are created disabled: CDC applies after post-data. */
  deferReplicaTriggers: boolean;
  /** NOT VALID domain checks wait for cutover: CDC applies after post-data. */
  deferDomainChecks: boolean;
  targetVersion: number;
  /** Jobs the load ran, by `<kind> <identity>`, with their state. */
  builtDuringLoad: Map<string, string>;
  report: (kind: string, identity: string, status: SchemaObjectResult['status'], detail?: string) => void;
  /** Whether to create an object; when not, it is reported 'skipped' (sync flag off) or 'existing'. */
  toCreate: (kind: string, identity: string, enabled: boolean, flag: string) => boolean;
  /** Runs jobs side by side on their own connections; a job without an action is reported 'created'. */
  runAll: (jobs: Job[]) => Promise<void>;
  run: (kind: string, identity: string, sql: string[], action?: string) => Promise<void>;
}

async function postData(
  sourceConnect: () => Promise<pg.Client>,
  targetConnect: () => Promise<pg.Client>,
  spec: MigrationSpec,
  { parallelism, mayRun }: { parallelism: number; mayRun: boolean },
): Promise<PostDataResult | undefined> {
  const { plan, catalog } = await readPlanAndCatalog(sourceConnect, spec);
  const security = await readSecurityCatalog(sourceConnect, plan);
  const objects: SchemaObjectResult[] = [];
  const settings = [...TARGET_SETTINGS, `maintenance_work_mem = '256MB'`];
  const target = await targetConnect();
  try {
    for (const setting of settings) await target.query(`SET ${setting}`);
    const run = await startRun(target, targetConnect, spec, settings, { parallelism, mayRun }, objects);
    await createKeysIndexesAndConstraints(run, catalog);
    await addDomainChecks(run, plan);
    await createStatistics(run, security);
    await createForeignKeys(run, plan, catalog);
    await setIndexProperties(run, catalog);
    await createTriggers(run, catalog);
    await createRulesAndPolicies(run, security);
    // Materialized views are refreshed by their owners, under their row-level security, as on the source.
    await setCommentsOwnersAndPrivileges(run, security);
    await refreshAndAnalyze(run, plan);
  } catch (error) {
    if (error instanceof StatementsLeft) return undefined;
    throw error;
  } finally {
    await target.end().catch(() => undefined);
  }
  return { objects };
}

/** The plan and the catalog rows of its tables and views, read on a source connection of their own. */
async function readPlanAndCatalog(sourceConnect: () => Promise<pg.Client>, spec: MigrationSpec): Promise<{ plan: SchemaPlan; catalog: Catalog }> {
  const source = await sourceConnect();
  try {
    return await readSource(source, async () => {
      const plan = await planSchema(source, spec);
      const relations = [
        ...plan.tables.map((t) => t.oid),
        ...plan.nodes.filter((n) => n.kind === 'view' || n.kind === 'materialized view').map((n) => Number(n.key.slice(4))),
      ];
      return { plan, catalog: await readCatalog(source, relations, plan.dropped) };
    });
  } finally {
    await source.end().catch(() => undefined);
  }
}

async function startRun(
  target: pg.Client,
  targetConnect: () => Promise<pg.Client>,
  spec: MigrationSpec,
  settings: string[],
  { parallelism, mayRun }: { parallelism: number; mayRun: boolean },
  objects: SchemaObjectResult[],
): Promise<PostDataRun> {
  const willRun = (statements: number) => {
    if (!mayRun && statements > 0) throw new StatementsLeft();
  };
  const report = (kind: string, identity: string, status: SchemaObjectResult['status'], detail?: string) => {
    objects.push(detail ? { kind, identity, status, detail } : { kind, identity, status });
  };
  const targetVersion = await serverVersion(target);
  const existing = await existingOnTarget(target);
  const builtDuringLoad = await indexJobStates(target, spec.name);
  const toCreate = (kind: string, identity: string, enabled: boolean, flag: string) => {
    const early = builtDuringLoad.get(`${kind} ${identity}`);
    if (early === 'done') report(kind, identity, 'created', 'built as soon as its table was loaded');
    else if (early === 'existing') report(kind, identity, 'existing');
    else if (!enabled) report(kind, identity, 'skipped', `schema.sync.${flag} is false`);
    else if (existing.has(`${kind === 'foreign key' ? 'constraint' : kind} ${identity}`)) report(kind, identity, 'existing');
    else return true;
    return false;
  };
  const runAll = (jobs: Job[]) => {
    willRun(jobs.length);
    return inParallel(jobs, parallelism, targetConnect, settings, async (client, job) => {
      await runFor(client, job.kind, job.identity, job.sql, job.action);
      if (!job.action) report(job.kind, job.identity, 'created');
    });
  };
  const run = (kind: string, identity: string, sql: string[], action?: string) => {
    willRun(sql.length);
    return runFor(target, kind, identity, sql, action);
  };
  const deferReplicaTriggers = spec.mode !== 'full' && spec.schema.replicaTriggers === 'disabled';
  const deferDomainChecks = deferDomainChecksToCutover(spec);
  return { target, sync: spec.schema.sync, deferReplicaTriggers, deferDomainChecks, targetVersion, builtDuringLoad, report, toCreate, runAll, run };
}

/**
 * 1. Primary keys, always (CDC and the comparison need them), one table hierarchy each, side by side.
 * 2. Then indexes and unique/check/exclusion constraints: each touches one table, so they run side by side too.
 */
async function createKeysIndexesAndConstraints({ sync, report, toCreate, runAll }: PostDataRun, catalog: Catalog): Promise<void> {
  const [keys, others] = singleTableJobs(catalog, sync);
  for (const skipped of catalog.onDropped) report(skipped.kind, skipped.identity, 'skipped', skipped.detail);
  for (const index of catalog.indexes.filter((i) => !i.valid && !i.by_constraint && !i.inherited))
    report('index', index.identity, 'skipped', 'invalid on the source');
  await runAll(keys.filter((job) => toCreate(job.kind, job.identity, true, 'constraints')));
  await runAll(others.filter((job) => toCreate(job.kind, job.identity, job.kind === 'index' ? sync.indexes : sync.constraints, job.kind === 'index' ? 'indexes' : 'constraints')));
}

/** 2b. A domain's NOT VALID checks, after the load (engine/schema/domain-checks.ts). */
async function addDomainChecks({ target, deferDomainChecks, report, run }: PostDataRun, plan: SchemaPlan): Promise<void> {
  if (deferDomainChecks) {
    for (const o of domainChecksAwaitingCutover(plan)) report(o.kind, o.identity, o.status, o.detail);
    return;
  }
  const { existing, missing } = await notValidDomainChecks(target, plan);
  for (const check of existing) report('domain constraint', check.identity, 'existing');
  for (const check of missing) {
    await run('domain constraint', check.identity, [check.sql]);
    report('domain constraint', check.identity, 'created', 'NOT VALID on the source, added after the load');
  }
}

/** 3. Foreign keys: added NOT VALID (quick, one at a time: each locks two tables), then validated side by side. */
async function createForeignKeys({ sync, targetVersion, report, toCreate, runAll, run }: PostDataRun, plan: SchemaPlan, catalog: Catalog): Promise<void> {
  const selected = new Set(plan.tables.map((t) => t.oid));
  const validate: Job[] = [];
  for (const fk of catalog.constraints.filter((c) => c.contype === 'f')) {
    if (!selected.has(fk.ref_oid)) {
      report('foreign key', fk.identity, 'skipped', `references ${fk.ref_identity}, which is not selected`);
      continue;
    }
    if (!toCreate('foreign key', fk.identity, sync.foreignKeys, 'foreignKeys')) continue;
    // Before PostgreSQL 18 a foreign key on a partitioned table cannot be NOT VALID, and one referencing a
    // partitioned table keeps its per-partition parts unvalidated after VALIDATE: both are checked as they are added.
    const deferValidation = fk.validated && !((fk.relkind === 'p' || fk.ref_relkind === 'p') && targetVersion < 180000);
    const add = `ALTER TABLE ${fk.table_identity} ADD CONSTRAINT ${fk.name} ${fk.def}${deferValidation ? ' NOT VALID' : ''}`;
    await run('foreign key', fk.identity, [add]);
    if (deferValidation)
      validate.push({ kind: 'foreign key', identity: fk.identity, sql: [`ALTER TABLE ${fk.table_identity} VALIDATE CONSTRAINT ${fk.name}`], action: 'validate' });
    report('foreign key', fk.identity, 'created', fk.validated ? undefined : 'NOT VALID on the source, left unvalidated');
  }
  await runAll(validate);
}

/** 4. Table properties that name an index, now that the indexes exist. */
async function setIndexProperties({ target, run }: PostDataRun, catalog: Catalog): Promise<void> {
  const indexesNow = await existingOnTarget(target);
  for (const index of catalog.indexes.filter((i) => (i.clustered || i.replident) && indexesNow.has(`index ${i.identity}`))) {
    const sql = [
      ...(index.clustered ? [`ALTER TABLE ONLY ${index.table_identity} CLUSTER ON ${index.name}`] : []),
      ...(index.replident ? [`ALTER TABLE ONLY ${index.table_identity} REPLICA IDENTITY USING INDEX ${index.name}`] : []),
    ];
    await run('table', index.table_identity, sql, 'alter');
  }
}

/**
 * 5. Triggers, with their enabled state; in the CDC modes ENABLE ALWAYS/REPLICA ones stay
 * disabled until cutover unless schema.replicaTriggers is "fire" (they would fire for every
 * replicated row: the applier writes as replica).
 */
async function createTriggers({ sync, deferReplicaTriggers, report, toCreate, run }: PostDataRun, catalog: Catalog): Promise<void> {
  for (const trigger of catalog.triggers) {
    if (!toCreate('trigger', trigger.identity, sync.triggers, 'triggers')) continue;
    const deferred = deferReplicaTriggers && trigger.relkind !== 'v' && FIRES_AS_REPLICA.has(trigger.enabled);
    const state = ENABLE[deferred ? 'D' : trigger.enabled];
    const sql = [trigger.def, ...(state && trigger.relkind !== 'v' ? [`ALTER TABLE ${trigger.table_identity} ${state} ${trigger.name}`] : [])];
    await run('trigger', trigger.identity, sql);
    const detail = deferred
      ? `disabled until cutover, then ${ENABLE[trigger.enabled]!.replace(' TRIGGER', '').toLowerCase()} (schema.replicaTriggers "disabled")`
      : state?.replace(' TRIGGER', '').toLowerCase();
    report('trigger', trigger.identity, 'created', detail);
  }
}

/** 6. Materialized views, in dependency order, then statistics for the planner. */
async function refreshAndAnalyze({ builtDuringLoad, report, runAll, run }: PostDataRun, plan: SchemaPlan): Promise<void> {
  for (const view of plan.nodes.filter((n) => n.kind === 'materialized view')) {
    if (!view.populated) {
      report('materialized view data', view.identity, 'skipped', 'not populated on the source');
      continue;
    }
    await run('materialized view', view.identity, [`REFRESH MATERIALIZED VIEW ${view.identity}`], 'refresh');
    report('materialized view data', view.identity, 'created', 'refreshed');
  }
  const roots = plan.tables.filter((t) => !t.root).map(quoteTable).filter((t) => builtDuringLoad.get(`analyze ${t}`) !== 'done');
  await runAll(roots.map((t) => ({ kind: 'table', identity: t, sql: [`ANALYZE ${t}`], action: 'analyze' })));
}

/** 7. Rules, then row-level security policies with ENABLE / FORCE ROW LEVEL SECURITY (security.ts). */
async function createRulesAndPolicies(run: PostDataRun, security: SecurityCatalog): Promise<void> {
  await createRules(run, security);
  await createPolicies(run, security);
  await setRowSecurity(run, security);
}

/** 8. Last: comments on everything, then owners, privileges and default privileges (comments.ts, privileges.ts). */
async function setCommentsOwnersAndPrivileges(run: PostDataRun, security: SecurityCatalog): Promise<void> {
  await setComments(run, security.comments, security.schemas);
  await setOwnersAndPrivileges(run, security.owned, security.schemas, security.defaultPrivileges);
}

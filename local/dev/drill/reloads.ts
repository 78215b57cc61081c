/**
 * Full reloads, seen on the target: a reloaded table gets a new relfilenode (pgferry drops or
 * truncates it), and a re-copied unit of pgferry.units gets a new finished_at. The baseline is
 * taken once the first run streams; tables the drill's workload truncates (TRUNCATE gives a new
 * relfilenode too) are judged by their units only.
 */
import type { LocalCluster } from '../cluster.js';
import { DRILL_DATABASE } from './setup.js';

/** The workload TRUNCATEs this table (local/dev/workload-transactions.ts, scratch_truncate): a new relfilenode there is no reload. */
export const TRUNCATED_BY_WORKLOAD = ['public.workload_scratch'];

async function relfilenodes(target: LocalCluster): Promise<Map<string, string>> {
  const [result] = await target.sql(
    `SELECT format('%I.%I', n.nspname, c.relname) AS table, c.relfilenode::text AS node
       FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
      WHERE c.relkind = 'r' AND n.nspname = 'public'`,
    DRILL_DATABASE,
  );
  return new Map(result!.rows.map((row: { table: string; node: string }) => [row.table, row.node]));
}

async function unitsDone(target: LocalCluster, migration: string): Promise<Map<string, string>> {
  const [result] = await target.sql(
    `SELECT id::text, format('%I.%I', target_schema, target_table) || ' ' || state || ' ' || rows_copied || ' ' || coalesce(finished_at::text, '') AS unit
       FROM pgferry.units WHERE migration = '${migration.replace(/'/g, "''")}'`,
    DRILL_DATABASE,
  );
  return new Map(result!.rows.map((row: { id: string; unit: string }) => [row.id, row.unit]));
}

export interface ReloadCheck {
  /** Tables whose relfilenode changed, or with a unit copied again. */
  reloaded: string[];
  unitsRecopied: number;
  /** Tables whose relfilenode was compared, and units compared. */
  tablesChecked: number;
  unitsChecked: number;
}

export class ReloadBaseline {
  private constructor(
    private readonly nodes: Map<string, string>,
    private readonly units: Map<string, string>,
    private readonly migration: string,
  ) {}

  static async take(target: LocalCluster, migration: string): Promise<ReloadBaseline> {
    return new ReloadBaseline(await relfilenodes(target), await unitsDone(target, migration), migration);
  }

  /** The drill rewrote `table` itself (ALTER TYPE): its relfilenode from now on is the baseline. */
  async retake(target: LocalCluster, table: string): Promise<void> {
    const node = (await relfilenodes(target)).get(table);
    if (node !== undefined && this.nodes.has(table)) this.nodes.set(table, node);
  }

  async check(target: LocalCluster): Promise<ReloadCheck> {
    const nodes = await relfilenodes(target);
    const units = await unitsDone(target, this.migration);
    const recopied = [...this.units].filter(([id, unit]) => units.get(id) !== unit).map(([, unit]) => unit.split(' ')[0]!);
    const renewed = [...this.nodes].filter(([table, node]) => !TRUNCATED_BY_WORKLOAD.includes(table) && nodes.get(table) !== node).map(([table]) => table);
    return {
      reloaded: [...new Set([...renewed, ...recopied])],
      unitsRecopied: recopied.length,
      tablesChecked: [...this.nodes.keys()].filter((table) => !TRUNCATED_BY_WORKLOAD.includes(table)).length,
      unitsChecked: this.units.size,
    };
  }
}

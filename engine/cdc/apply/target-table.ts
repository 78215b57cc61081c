/**
 * Target-table metadata: what the applier needs to know about the table it writes (column
 * types for casts and arrays, generated and identity columns, a unique index on the key,
 * partitioning), read once per Relation from the target's catalog.
 */
import type pg from 'pg';
import { qualified, quoteIdent, quoteTable } from '../../sql.js';
import { ApplyError } from './errors.js';
import type { Relation } from './relation.js';

export interface TargetColumn {
  quoted: string;
  /** format_type on the target, e.g. `character(84)`. */
  type: string;
  /**
   * format_type of its array type with the same typmod, e.g. `character(84)[]`; null for arrays
   * (no array-of-array type) and composites (unnest would expand them): those are bound as text[].
   */
  arrayType: string | null;
  /** Array element delimiter (`,` except e.g. box's `;`). */
  delim: string;
  /** Equality usable to pre-filter full-identity matches: 'plain' (`=`), a type to cast both sides to, or null. */
  eq: string | null;
}

export interface TargetTable {
  quoted: string;
  /** `ONLY ` for plain tables (never touch inheritance children); empty for partitioned tables. */
  only: string;
  partitioned: boolean;
  /** Aligned with the relation message's columns. */
  columns: TargetColumn[];
  /** Column indexes written and matched: present on the target, not generated there, and not left out by the spec. */
  writable: number[];
  /** A unique, immediate, non-partial index on exactly the key columns exists (ON CONFLICT arbiter). */
  uniqueKey: boolean;
  /** GENERATED ALWAYS identity columns: INSERTs need OVERRIDING SYSTEM VALUE, UPDATEs cannot set them (nor could the source, except to DEFAULT). */
  alwaysIdentity: Set<number>;
  /** `OVERRIDING SYSTEM VALUE ` when the table has such a column. */
  overriding: string;
}

/** One row of TARGET_SQL. */
export interface TargetCatalogRow {
  relkind: string;
  columns: { name: string; type: string; arrayType: string | null; delim: string; generated: boolean; identityAlways: boolean; eq: string | null }[] | null;
  /** Column names of each usable unique index. */
  unique_indexes: string[][] | null;
}

const TARGET_SQL = `
SELECT c.relkind::text AS relkind,
  (SELECT json_agg(json_build_object(
            'name', a.attname,
            'type', format_type(a.atttypid, a.atttypmod),
            -- unnest() of an array of composites (or of domains over one) expands the fields: such columns travel as text[].
            'arrayType', CASE WHEN t.typarray <> 0 AND NOT EXISTS (
                           WITH RECURSIVE base(oid, typtype, typbasetype) AS (
                             SELECT t.oid, t.typtype, t.typbasetype
                             UNION ALL SELECT b.oid, b.typtype, b.typbasetype FROM pg_type b JOIN base ON b.oid = base.typbasetype
                                        WHERE base.typtype = 'd')
                           SELECT 1 FROM base WHERE base.typtype = 'c')
                         THEN format_type(t.typarray, a.atttypmod) END,
            'delim', t.typdelim::text,
            'generated', a.attgenerated <> '',
            'identityAlways', a.attidentity = 'a',
            'eq', CASE
                    WHEN t.typtype = 'e' THEN 'plain'
                    WHEN t.typcategory = 'A' OR t.typtype IN ('c', 'r', 'm', 'p') THEN NULL
                    WHEN EXISTS (SELECT 1 FROM pg_opclass oc JOIN pg_am am ON am.oid = oc.opcmethod
                                  WHERE am.amname = 'btree' AND oc.opcdefault
                                    AND oc.opcintype = CASE WHEN t.typtype = 'd' THEN t.typbasetype ELSE t.oid END) THEN 'plain'
                    ELSE (SELECT format_type(oc.opcintype, NULL) FROM pg_opclass oc JOIN pg_am am ON am.oid = oc.opcmethod
                            JOIN pg_cast k ON k.castsource = CASE WHEN t.typtype = 'd' THEN t.typbasetype ELSE t.oid END
                                          AND k.casttarget = oc.opcintype AND k.castmethod = 'b' AND k.castcontext = 'i'
                           WHERE am.amname = 'btree' AND oc.opcdefault ORDER BY oc.opcintype LIMIT 1)
                  END)
          ORDER BY a.attnum)
     FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid
    WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped) AS columns,
  (SELECT json_agg((SELECT array_agg(a.attname::text) FROM unnest(i.indkey) k(attnum)
                      JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = k.attnum))
     FROM pg_index i
    WHERE i.indrelid = c.oid AND i.indisunique AND i.indimmediate AND i.indisvalid AND i.indisready
      AND i.indpred IS NULL AND i.indexprs IS NULL) AS unique_indexes
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE n.nspname = $1 AND c.relname = $2 AND c.relkind IN ('r', 'p')`;

/** The target table of `rel`, read from the target's catalog once (cached on the relation until its next Relation message). */
export async function targetTableOf(client: pg.ClientBase, rel: Relation): Promise<TargetTable> {
  if (rel.target) return rel.target;
  const { rows } = await client.query<TargetCatalogRow>(TARGET_SQL, [rel.targetRef.schema, rel.targetRef.name]);
  rel.target = toTargetTable(rel, rows[0]);
  return rel.target;
}

/** The target table described by a catalog row, aligned with the source's columns; readable errors for what does not fit. */
export function toTargetTable(rel: Relation, row: TargetCatalogRow | undefined): TargetTable {
  const renamed = qualified(rel.targetRef) === rel.display ? '' : ` (mapped to ${qualified(rel.targetRef)})`;
  if (!row) {
    throw new ApplyError(`Table ${rel.display}${renamed} does not exist on the target: create it (schema sync) or remove it from the publication.`);
  }
  const byName = new Map((row.columns ?? []).map((c) => [c.name, c]));
  const columns: TargetColumn[] = [];
  const writable: number[] = [];
  const alwaysIdentity = new Set<number>();
  rel.message.columns.forEach((source, i) => {
    if (rel.excluded?.has(i)) {
      // Not carried to the target (it may not even exist there): never written nor matched.
      columns.push({ quoted: quoteIdent(source.name), type: 'text', arrayType: null, delim: ',', eq: null });
      return;
    }
    const c = byName.get(rel.targetColumns[i]!);
    if (!c) throw new ApplyError(`Column ${source.name}${rel.targetColumns[i] === source.name ? '' : ` (mapped to ${rel.targetColumns[i]})`} of ${rel.display}${renamed} does not exist in the target table: add it to the target (schema changes are replicated only when the source captures them: cdc.ddl "replicate"), then run \`pgferry resume SPEC\`.`);
    columns.push({ quoted: quoteIdent(c.name), type: c.type, arrayType: c.arrayType, delim: c.delim, eq: c.eq });
    if (!c.generated) writable.push(i);
    if (c.identityAlways) alwaysIdentity.add(i);
  });
  for (const k of rel.key) {
    // Under REPLICA IDENTITY FULL pgoutput marks every column as key: one left out is no key.
    if (!writable.includes(k) && !rel.excluded?.has(k)) throw new ApplyError(`Key column ${rel.message.columns[k]!.name} of ${rel.display} is a generated column on the target.`);
  }
  const keyNames = new Set(rel.key.map((k) => rel.targetColumns[k]!));
  const uniqueKey = (row.unique_indexes ?? []).some((cols) => cols.length === keyNames.size && cols.every((c) => keyNames.has(c)));
  const partitioned = row.relkind === 'p';
  const overriding = alwaysIdentity.size > 0 ? 'OVERRIDING SYSTEM VALUE ' : '';
  return { quoted: quoteTable(rel.targetRef), only: partitioned ? '' : 'ONLY ', partitioned, columns, writable, uniqueKey, alwaysIdentity, overriding };
}

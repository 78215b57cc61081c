/**
 * Comments on every object of the selected schemas (pg_description), whatever its kind: the
 * statement is built from pg_identify_object, whose identities are quoted and qualified, so a
 * kind pgferry learns to create later gets its comment too. A comment whose object is not on
 * the target is skipped with a line that says so.
 */
import type pg from 'pg';
import type { PostDataRun } from './postdata.js';
import { SELECTED } from './roles.js';

export interface CommentRow {
  type: string;
  identity: string;
  names: string[];
  args: string[];
  description: string;
}

/** The namespace of an object of each catalog that has comments (a cast: its source or target type's, whichever is selected). */
const NAMESPACE_OF = `CASE d.classoid
  WHEN 'pg_class'::regclass THEN (SELECT relnamespace FROM pg_class WHERE oid = d.objoid)
  WHEN 'pg_type'::regclass THEN (SELECT typnamespace FROM pg_type WHERE oid = d.objoid)
  WHEN 'pg_proc'::regclass THEN (SELECT pronamespace FROM pg_proc WHERE oid = d.objoid)
  WHEN 'pg_constraint'::regclass THEN (SELECT connamespace FROM pg_constraint WHERE oid = d.objoid)
  WHEN 'pg_trigger'::regclass THEN (SELECT c.relnamespace FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid WHERE t.oid = d.objoid)
  WHEN 'pg_policy'::regclass THEN (SELECT c.relnamespace FROM pg_policy p JOIN pg_class c ON c.oid = p.polrelid WHERE p.oid = d.objoid)
  WHEN 'pg_rewrite'::regclass THEN (SELECT c.relnamespace FROM pg_rewrite r JOIN pg_class c ON c.oid = r.ev_class WHERE r.oid = d.objoid)
  WHEN 'pg_statistic_ext'::regclass THEN (SELECT stxnamespace FROM pg_statistic_ext WHERE oid = d.objoid)
  WHEN 'pg_collation'::regclass THEN (SELECT collnamespace FROM pg_collation WHERE oid = d.objoid)
  WHEN 'pg_conversion'::regclass THEN (SELECT connamespace FROM pg_conversion WHERE oid = d.objoid)
  WHEN 'pg_operator'::regclass THEN (SELECT oprnamespace FROM pg_operator WHERE oid = d.objoid)
  WHEN 'pg_opclass'::regclass THEN (SELECT opcnamespace FROM pg_opclass WHERE oid = d.objoid)
  WHEN 'pg_opfamily'::regclass THEN (SELECT opfnamespace FROM pg_opfamily WHERE oid = d.objoid)
  WHEN 'pg_ts_config'::regclass THEN (SELECT cfgnamespace FROM pg_ts_config WHERE oid = d.objoid)
  WHEN 'pg_ts_dict'::regclass THEN (SELECT dictnamespace FROM pg_ts_dict WHERE oid = d.objoid)
  WHEN 'pg_ts_parser'::regclass THEN (SELECT prsnamespace FROM pg_ts_parser WHERE oid = d.objoid)
  WHEN 'pg_ts_template'::regclass THEN (SELECT tmplnamespace FROM pg_ts_template WHERE oid = d.objoid)
  WHEN 'pg_extension'::regclass THEN (SELECT extnamespace FROM pg_extension WHERE oid = d.objoid)
  WHEN 'pg_namespace'::regclass THEN d.objoid
  WHEN 'pg_cast'::regclass THEN (SELECT CASE WHEN st.typnamespace IN (SELECT oid FROM sel) THEN st.typnamespace ELSE tt.typnamespace END
                                   FROM pg_cast k JOIN pg_type st ON st.oid = k.castsource JOIN pg_type tt ON tt.oid = k.casttarget
                                  WHERE k.oid = d.objoid)
END`;

/** The comments on objects in the selected schemas (large objects are migrated with their data, elsewhere). */
export async function readComments(source: pg.Client, schemas: string[]): Promise<CommentRow[]> {
  const { rows } = await source.query<CommentRow>(
    `WITH ${SELECTED},
     described AS (SELECT d.*, ${NAMESPACE_OF} AS namespace FROM pg_description d
                    WHERE d.classoid <> 'pg_largeobject'::regclass AND (d.objoid >= 16384 OR d.classoid = 'pg_namespace'::regclass))
     SELECT o.type, o.identity, a.object_names AS names, a.object_args AS args, d.description,
            -- routines as ALTER/COMMENT take them: name(argument types), an aggregate without arguments (*)
            (SELECT format('%I.%I(%s)', n.nspname, p.proname, coalesce(nullif(oidvectortypes(p.proargtypes), ''), CASE WHEN p.prokind = 'a' THEN '*' END))
               FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
              WHERE d.classoid = 'pg_proc'::regclass AND p.oid = d.objoid) AS routine
       FROM described d, pg_identify_object(d.classoid, d.objoid, d.objsubid) o, pg_identify_object_as_address(d.classoid, d.objoid, d.objsubid) a
      WHERE d.namespace IN (SELECT oid FROM sel)
        AND NOT (d.classoid = 'pg_namespace'::regclass AND d.objoid = 'public'::regnamespace AND d.description = 'standard public schema')
        AND NOT EXISTS (SELECT 1 FROM pg_depend e WHERE e.classid = d.classoid AND e.objid = d.objoid AND e.deptype = 'e')
      ORDER BY o.type, o.identity`,
    [schemas],
  );
  return rows.map((r) => {
    const routine = (r as CommentRow & { routine: string | null }).routine;
    return { type: r.type, identity: routine ?? r.identity, names: r.names, args: r.args, description: r.description };
  });
}

const KEYWORD: Record<string, string> = { 'composite type': 'TYPE', 'statistics object': 'STATISTICS', 'table constraint': 'CONSTRAINT' };

/** `COMMENT ON <what>`'s <what> for an object pg_identify_object describes. */
export function commentTarget(row: Pick<CommentRow, 'type' | 'identity' | 'names' | 'args'>): string {
  if (row.type.endsWith(' column')) return `COLUMN ${row.identity}`;
  // "name on domain": the address gives the domain (a type name, quoted) and the constraint name (not quoted).
  if (row.type === 'domain constraint') return `CONSTRAINT "${row.args[0]!.replace(/"/g, '""')}" ON DOMAIN ${row.names[0]}`;
  return `${KEYWORD[row.type] ?? row.type.toUpperCase()} ${row.identity}`;
}

const literal = (text: string) => `'${text.replace(/'/g, "''")}'`;

/** SQLSTATEs of "the object is not there": undefined table, object, function, column, schema. */
const NOT_THERE = new Set(['42P01', '42704', '42883', '42703', '3F000']);

/** Whether a failure of `run` is PostgreSQL saying the object does not exist. */
export function notOnTarget(error: unknown): boolean {
  const code = (error as { cause?: { code?: string } }).cause?.code;
  return code !== undefined && NOT_THERE.has(code);
}

/** Sets every comment the target does not have yet, each on its own (a missing object is reported, and the rest go on). */
export async function setComments({ target, report, run }: PostDataRun, comments: CommentRow[], schemas: string[]): Promise<void> {
  const onTarget = new Map((await readComments(target, schemas)).map((c) => [`${c.type} ${c.identity}`, c.description]));
  for (const c of comments) {
    const what = commentTarget(c);
    // Already there (an extension's own comment, or a re-run): nothing to do or say.
    if (onTarget.get(`${c.type} ${c.identity}`) === c.description) continue;
    try {
      await run('comment', what, [`COMMENT ON ${what} IS ${literal(c.description)}`], 'comment on');
      report('comment', `${c.type} ${c.identity}`, 'created');
    } catch (error) {
      if (!notOnTarget(error)) throw error;
      report('comment', `${c.type} ${c.identity}`, 'skipped', 'its object is not on the target');
    }
  }
}

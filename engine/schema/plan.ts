/**
 * What the schema migration creates, in which order: the selection (tables, schemas, sync
 * flags) widened by what the selected objects need (pg_depend), narrowed by what cannot be
 * created (a view over a table that is not migrated), sorted so every object comes after
 * what it depends on. Read-only on the source; run inside `readSource`.
 */
import type pg from 'pg';
import { listTables, type TableInfo } from '../catalog/tables.js';
import { quoteIdent } from '../sql.js';
import { serverVersion } from '../connect/index.js';
import type { MigrationSpec } from '../spec/index.js';
import {
  collationNodes,
  routineNodes,
  sequenceNode,
  sequenceRows,
  typeNodes,
  userSchemas,
  viewNodes,
  type Node,
  type UserSchema,
} from './definitions.js';
import { tableNodes, unselectedTables } from './table-definitions.js';
import { readDroppedColumns, type DroppedColumn } from './dropped-columns.js';
import { aggregateNodes, operatorClassNodes, operatorFamilyNodes, operatorNodes } from './operators.js';
import { castNodes } from './casts.js';
import { textSearchNodes } from './text-search.js';
import { dependencies, extensionRows, type Edge, type ExtensionRow } from './dependencies.js';
import { notMigrated } from './not-migrated.js';
import type { SchemaObjectResult } from './objects.js';

export interface SchemaPlan {
  tables: TableInfo[];
  /** Schemas to create, quoted. */
  schemas: { identity: string; detail?: string }[];
  extensions: { identity: string; schemaIdentity: string; detail: string }[];
  /** Objects to create, in dependency order. */
  nodes: Node[];
  /** Why a wanted object was created beyond the selection ("needed by …"). */
  details: Map<string, string>;
  /** Objects left out: skipped ones and the kinds pgferry does not migrate. */
  omitted: SchemaObjectResult[];
  /** Columns not created on the target (objects.excludedColumns "drop"; dropped-columns.ts). */
  dropped: DroppedColumn[];
}

// Casts before tables and views: an expression using a cast without a function (or WITH INOUT) records no dependency on it.
const RANK: Record<Node['kind'], number> = {
  collation: 0,
  type: 0,
  sequence: 1,
  function: 2,
  procedure: 2,
  aggregate: 2,
  operator: 2,
  'operator family': 2,
  'operator class': 2,
  cast: 2,
  conversion: 2,
  'text search template': 2,
  'text search parser': 2,
  'text search dictionary': 2,
  'text search configuration': 2,
  table: 3,
  view: 4,
  'materialized view': 4,
};

/** `listTables` lists a legacy-inheritance child both as a root and under its parent: keep one entry per table. */
export function uniqueTables(tables: TableInfo[]): TableInfo[] {
  const byOid = new Map<number, TableInfo>();
  for (const t of tables) if (!byOid.has(t.oid) || !t.root) byOid.set(t.oid, t);
  return tables.filter((t) => byOid.get(t.oid) === t);
}

/** A schema is selected when a selected table is in it, or when the selection names it (or names nothing). */
export function selectSchemas(spec: Pick<MigrationSpec, 'objects'>, all: string[], tables: TableInfo[]): string[] {
  const { include, exclude } = spec.objects;
  const withTables = new Set(tables.map((t) => t.schema));
  return all.filter(
    (s) =>
      withTables.has(s) ||
      ((include.length === 0 || include.some((r) => r.schema === s)) && !exclude.some((r) => r.schema === s && r.tables.includes('*'))),
  );
}

type Sync = MigrationSpec['schema']['sync'];

export async function planSchema(source: pg.Client, spec: MigrationSpec): Promise<SchemaPlan> {
  const sync = spec.schema.sync;
  const version = await serverVersion(source);
  const tables = uniqueTables(await listTables(source, spec.objects));
  const selectedOids = new Set(tables.map((t) => t.oid));
  const schemaRows = await userSchemas(source);
  const schemas = selectSchemas(
    spec,
    schemaRows.map((s) => s.name),
    tables,
  );
  const inSelection = new Set(schemas);

  const dropped = await readDroppedColumns(source, spec, tables);
  const candidates = await candidateNodes(source, version, tables, selectedOids, dropped);
  excludeBySchemaAndFlag(candidates, sync, inSelection);
  const byKey = new Map(candidates.map((n) => [n.key, n]));

  const edges = (await dependencies(source, version)).filter(
    // A sequence's OWNED BY points at its table but the sequence must exist first (the default uses it).
    (e) => !(e.deptype === 'a' && byKey.get(e.node)?.kind === 'sequence'),
  );
  const followed = (e: Edge) => isFollowed(e, sync);
  const missing = notCreatable(edges, byKey);
  const { wanted, details } = wantedNodes(candidates, edges, byKey, missing, followed);
  const nodes = dependencyOrder(
    candidates.filter((n) => wanted.has(n.key)),
    edges.filter((e) => e.via === null && e.ref && wanted.has(e.ref)),
  );
  const { chosenExtensions, extensions } = chooseExtensions(await extensionRows(source), edges, wanted, inSelection, followed, byKey);

  const omitted: SchemaObjectResult[] = [];
  for (const node of candidates) {
    if (wanted.has(node.key) || (!inSelection.has(node.schema) && !node.wantedWithRefs)) continue;
    omitted.push({ kind: node.kind, identity: node.identity, status: 'skipped', detail: missing.get(node.key) ?? node.exclusion });
  }
  for (const identity of await unselectedTables(source, schemas, selectedOids))
    omitted.push({ kind: 'table', identity, status: 'skipped', detail: 'not selected by objects' });
  omitted.push(...(await notMigrated(source, schemas, spec)));

  return {
    tables,
    schemas: schemasToCreate(schemaRows, schemas, inSelection, nodes, chosenExtensions),
    extensions: chosenExtensions.map((x) => ({ identity: x.identity, schemaIdentity: x.schemaIdentity, detail: extensions.get(x.name)! })),
    nodes,
    details,
    omitted,
    dropped,
  };
}

/** Every object of the source that the schema migration knows how to create, excluded or not. */
async function candidateNodes(source: pg.Client, version: number, tables: TableInfo[], selectedOids: Set<number>, dropped: DroppedColumn[]): Promise<Node[]> {
  const routines = await routineNodes(source);
  const sequences = (await sequenceRows(source)).filter((s) => s.owner_deptype !== 'i');
  return [
    ...(await collationNodes(source)),
    ...(await typeNodes(source, version)),
    ...sequences.map((s) => {
      const node = sequenceNode(s, s.owner_oid !== null && selectedOids.has(s.owner_oid));
      if (s.owner_deptype === 'a' && !selectedOids.has(s.owner_oid!)) node.exclusion = `owned by ${s.owner_table}, which is not selected`;
      return node;
    }),
    ...routines.nodes,
    ...(await aggregateNodes(source)),
    ...(await operatorNodes(source)),
    ...(await operatorFamilyNodes(source)),
    ...(await operatorClassNodes(source)),
    ...(await castNodes(source)),
    ...(await textSearchNodes(source)),
    ...(await tableNodes(source, tables, version, dropped)),
    ...(await viewNodes(source)),
  ];
}

/** Sets `exclusion` on the objects outside the selected schemas or whose sync flag is off (tables excepted: the selection decides). */
function excludeBySchemaAndFlag(candidates: Node[], sync: Sync, inSelection: Set<string>): void {
  const flags: Partial<Record<Node['kind'], [boolean, string]>> = {
    sequence: [sync.sequences, 'sequences'],
    function: [sync.functions, 'functions'],
    procedure: [sync.functions, 'functions'],
    aggregate: [sync.functions, 'functions'],
    view: [sync.views, 'views'],
    'materialized view': [sync.materializedViews, 'materializedViews'],
  };
  for (const node of candidates) {
    if (node.kind === 'table' || node.wantedWithRefs) continue;
    // Collations, types, operators and text search objects have no sync flag: a selected schema's are all created.
    const [enabled, flag] = flags[node.kind] ?? [true, ''];
    if (!inSelection.has(node.schema)) node.exclusion = 'not in a selected schema';
    else if (!enabled) node.exclusion ??= `schema.sync.${flag} is false`;
  }
}

/** Whether a wanted object's dependency pulls in what it references: not through a sub-object whose sync flag is off. */
function isFollowed(e: Edge, sync: Sync): boolean {
  return (
    e.via === null ||
    (e.via === 'index' && sync.indexes) ||
    (e.via === 'constraint' && (sync.constraints || sync.foreignKeys)) ||
    (e.via === 'trigger' && sync.triggers)
  );
}

/**
 * An object that needs something pgferry does not create cannot be created (tables excepted:
 * they fail loudly). Returns why, by key; transitively.
 */
function notCreatable(edges: Edge[], byKey: Map<string, Node>): Map<string, string> {
  const missing = new Map<string, string>();
  for (let changed = true; changed; ) {
    changed = false;
    for (const e of edges) {
      const node = byKey.get(e.node);
      if (!node || node.kind === 'table' || missing.has(e.node) || e.via !== null || !e.ref || e.extension) continue;
      const ref = byKey.get(e.ref);
      if (ref && !missing.has(e.ref)) continue;
      missing.set(e.node, `depends on ${ref ? `${ref.kind} ${ref.identity}` : e.refName}, which is not migrated`);
      changed = true;
    }
  }
  return missing;
}

/** Wanted: the selection, plus whatever it needs; `details` says why an excluded object is created anyway. */
function wantedNodes(
  candidates: Node[],
  edges: Edge[],
  byKey: Map<string, Node>,
  missing: Map<string, string>,
  followed: (e: Edge) => boolean,
): { wanted: Set<string>; details: Map<string, string> } {
  const edgesFrom = new Map<string, Edge[]>();
  for (const e of edges) edgesFrom.set(e.node, [...(edgesFrom.get(e.node) ?? []), e]);
  const wanted = new Set(candidates.filter((n) => !n.exclusion && !missing.has(n.key)).map((n) => n.key));
  const details = new Map<string, string>();
  const queue = [...wanted];
  const withRefs = candidates.filter((n) => n.wantedWithRefs && !missing.has(n.key));
  for (;;) {
    while (queue.length) {
      const key = queue.pop()!;
      for (const e of edgesFrom.get(key) ?? []) {
        if (!followed(e) || !e.ref || e.extension || wanted.has(e.ref) || missing.has(e.ref) || !byKey.has(e.ref)) continue;
        const ref = byKey.get(e.ref)!;
        wanted.add(e.ref);
        details.set(e.ref, `${ref.exclusion}, but created: needed by ${byKey.get(key)!.identity}`);
        queue.push(e.ref);
      }
    }
    // A cast comes with the first of its types or function that is migrated (what it needs then comes with it),
    // or with nothing at all when it is between built-in types with a built-in function, or none.
    for (const node of withRefs) {
      if (wanted.has(node.key)) continue;
      const refs = (edgesFrom.get(node.key) ?? []).filter((e) => e.ref || e.extension);
      const by = refs.find((e) => e.ref && wanted.has(e.ref));
      if (!by && refs.length) continue;
      wanted.add(node.key);
      const ref = by && byKey.get(by.ref!)!;
      details.set(node.key, ref ? `created with ${ref.kind} ${ref.identity}` : 'its types and function are built in');
      queue.push(node.key);
    }
    if (!queue.length) break;
  }
  return { wanted, details };
}

/** The extensions installed in a selected schema or needed by a wanted object, with why (by name). */
function chooseExtensions(
  allExtensions: ExtensionRow[],
  edges: Edge[],
  wanted: Set<string>,
  inSelection: Set<string>,
  followed: (e: Edge) => boolean,
  byKey: Map<string, Node>,
): { chosenExtensions: ExtensionRow[]; extensions: Map<string, string> } {
  const extensions = new Map<string, string>();
  for (const x of allExtensions) if (inSelection.has(x.schema)) extensions.set(x.name, `installed in selected schema ${x.schemaIdentity}`);
  for (const e of edges)
    if (e.extension && wanted.has(e.node) && followed(e) && !extensions.has(e.extension))
      extensions.set(e.extension, `needed by ${byKey.get(e.node)!.identity}`);
  return { chosenExtensions: allExtensions.filter((x) => extensions.has(x.name)), extensions };
}

/** The selected schemas, then those a created object or extension lives in, with why. */
function schemasToCreate(
  schemaRows: UserSchema[],
  schemas: string[],
  inSelection: Set<string>,
  nodes: Node[],
  chosenExtensions: ExtensionRow[],
): SchemaPlan['schemas'] {
  const quoted = new Map(schemaRows.map((s) => [s.name, s.identity]));
  const schemaList: SchemaPlan['schemas'] = schemas.map((s) => ({ identity: quoted.get(s)! }));
  const addSchema = (name: string, detail: string) => {
    const identity = quoted.get(name) ?? quoteIdent(name);
    if (!schemaList.some((s) => s.identity === identity)) schemaList.push({ identity, detail });
  };
  for (const node of nodes) if (node.schema && !inSelection.has(node.schema)) addSchema(node.schema, `needed by ${node.identity}`);
  for (const x of chosenExtensions)
    if (!inSelection.has(x.schema) && x.schema !== 'pg_catalog') addSchema(x.schema, `schema of extension ${x.identity}`);
  return schemaList;
}

/**
 * Topological order (Kahn), ties broken by kind then name so the output is stable. A cycle is
 * broken at its earliest kind (types, then sequences, functions, tables, views).
 */
function dependencyOrder(nodes: Node[], edges: Edge[]): Node[] {
  const compare = (a: Node, b: Node) => RANK[a.kind] - RANK[b.kind] || (a.identity < b.identity ? -1 : a.identity > b.identity ? 1 : 0);
  const pending = new Map(nodes.map((n) => [n.key, n]));
  const blockers = new Map<string, Set<string>>(nodes.map((n) => [n.key, new Set()]));
  const dependents = new Map<string, string[]>();
  for (const e of edges) {
    if (!pending.has(e.node) || !pending.has(e.ref!) || blockers.get(e.node)!.has(e.ref!)) continue;
    blockers.get(e.node)!.add(e.ref!);
    dependents.set(e.ref!, [...(dependents.get(e.ref!) ?? []), e.node]);
  }
  const ready = nodes.filter((n) => blockers.get(n.key)!.size === 0).sort(compare);
  const insert = (node: Node) => {
    let low = 0;
    let high = ready.length;
    while (low < high) {
      const mid = (low + high) >> 1;
      if (compare(ready[mid]!, node) < 0) low = mid + 1;
      else high = mid;
    }
    ready.splice(low, 0, node);
  };
  const order: Node[] = [];
  while (pending.size) {
    const next = ready.shift() ?? [...pending.values()].sort(compare)[0]!;
    if (!pending.delete(next.key)) continue;
    order.push(next);
    for (const key of dependents.get(next.key) ?? []) {
      const waiting = blockers.get(key)!;
      waiting.delete(next.key);
      if (waiting.size === 0 && pending.has(key)) insert(pending.get(key)!);
    }
  }
  return order;
}

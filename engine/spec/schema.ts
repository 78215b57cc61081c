import { z } from 'zod';
import { TABLE_KEY } from '../catalog/tables.js';
import { whereProblem } from './where.js';

const NAME = /^[A-Za-z][A-Za-z0-9_-]{3,49}$/;
const NO_FORBIDDEN_CHARS = /^[^=<>&'"]*$/;
const RFC3339 =
  /^(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(\.\d+)?([Zz]|[+-](\d{2}):(\d{2}))$/;
const REGION = '[a-z]{2}(?:-[a-z]+)+-\\d';
const PARTITION = 'aws(?:-cn|-us-gov)?';
const SECRET_REF = new RegExp(
  `^(?:arn:${PARTITION}:secretsmanager:${REGION}:\\d{12}:secret:[A-Za-z0-9/_+=.@-]+` +
    '|env:[A-Za-z_][A-Za-z0-9_]*' +
    '|file:.+)$',
);
const SNS_TOPIC_ARN = new RegExp(`^arn:${PARTITION}:sns:${REGION}:\\d{12}:[A-Za-z0-9_-]{1,256}(?:\\.fifo)?$`);
const PG_IDENTIFIER = /^[a-z_][a-z0-9_]{0,62}$/;
const SIZE = /^([1-9]\d*)\s*(b|kb|mb|gb|tb)?$/i;
const SIZE_UNITS: Record<string, number> = { b: 1, kb: 1024, mb: 1024 ** 2, gb: 1024 ** 3, tb: 1024 ** 4 };

const TIMESTAMP_MESSAGE = 'must be an RFC 3339 timestamp with a time zone, e.g. "2026-11-23T22:00:00Z"';
const SIZE_MESSAGE = 'must be a size: a positive number of bytes or a string like "512MB" (units B, kB, MB, GB, TB)';
const PG_IDENTIFIER_MESSAGE =
  'must be lower-case letters, digits and underscores, not starting with a digit, at most 63 characters';

/** Rejects impossible dates and times; a malformed value is left to the RFC3339 pattern. */
function isRealTimestamp(value: string): boolean {
  const m = RFC3339.exec(value);
  if (!m) return true;
  const [year, month, day, hour, minute, second] = m.slice(1, 7).map(Number) as [number, number, number, number, number, number];
  const date = new Date(Date.UTC(year, month - 1, day));
  const offsetOk = m[9] === undefined || (Number(m[9]) <= 23 && Number(m[10]) <= 59);
  return (
    date.getUTCFullYear() === year &&
    date.getUTCMonth() === month - 1 &&
    date.getUTCDate() === day &&
    hour <= 23 &&
    minute <= 59 &&
    second <= 59 &&
    offsetOk
  );
}

/** An RFC 3339 timestamp with a time zone, of a real date and time. */
export function isRfc3339Timestamp(value: string): boolean {
  return RFC3339.test(value) && isRealTimestamp(value);
}

const forbiddenCharsMessage = (input: unknown): string => {
  const found = [...new Set(String(input).match(/[=<>&'"]/g))];
  return `must not contain any of = < > & ' " (found ${found.join(' ')})`;
};

const intBetween = (min: number, max: number) => {
  const error = `must be between ${min} and ${max}`;
  return z.int().min(min, { error }).max(max, { error });
};

const size = z
  .union([z.int().positive({ error: SIZE_MESSAGE }), z.string().regex(SIZE, { error: SIZE_MESSAGE })], {
    error: SIZE_MESSAGE,
  })
  .transform((value, ctx) => {
    if (typeof value === 'number') return value;
    const [, amount, unit = 'b'] = SIZE.exec(value)!;
    const bytes = Number(amount) * SIZE_UNITS[unit.toLowerCase()]!;
    if (!Number.isSafeInteger(bytes)) {
      ctx.issues.push({ code: 'custom', message: 'is too large', input: value });
      return z.NEVER;
    }
    return bytes;
  });

/** A size as the spec writes it (bytes, or a string like "64MB") in bytes; undefined when it is none. Also for `pgferry throttle --bytes`. */
export function parseSize(value: string | number): number | undefined {
  const parsed = size.safeParse(value);
  return parsed.success ? parsed.data : undefined;
}

const ROWS_PER_SECOND_MESSAGE = 'must be a whole number of rows per second, at least 1 (leave it out for no limit)';
const rowsPerSecond = z.int({ error: ROWS_PER_SECOND_MESSAGE }).min(1, { error: ROWS_PER_SECOND_MESSAGE });

const pgIdentifier = z.string().regex(PG_IDENTIFIER, { error: PG_IDENTIFIER_MESSAGE });
const schemaName = z.string().min(1).max(63);
const schemaTableKey = z
  .string()
  .regex(TABLE_KEY, { error: 'key must be written "schema.table", e.g. "public.users"; double-quote a name that contains a dot, e.g. public."v1.2"' })
  .describe('A table written "schema.table"; a name that contains a dot or a double quote is double-quoted, e.g. public."v1.2".');

const secretRef = z
  .string()
  .regex(SECRET_REF, { error: 'must be a Secrets Manager ARN (arn:aws:secretsmanager:…), "env:NAME" or "file:PATH"' })
  .describe(
    'Where the connection settings come from: a Secrets Manager ARN (arn:aws:secretsmanager:…), "env:NAME" (an environment variable) or "file:PATH".',
  );

const endpointSchema = z
  .strictObject({
    secret: secretRef,
    database: z.string().min(1).max(63).optional().describe("Database name; overrides the secret's dbname."),
    tls: z
      .strictObject({
        mode: z
          .enum(['disable', 'allow', 'prefer', 'require', 'verify-ca', 'verify-full'])
          .optional()
          .describe(
            'libpq sslmode. When neither this nor the secret\'s sslmode is set: "verify-full" for Amazon RDS and Aurora (a host ending in .rds.amazonaws.com), otherwise "prefer". verify-full trusts caFile when given, otherwise the standard public roots plus the Amazon RDS CA bundles; verify-ca trusts caFile, otherwise only the Amazon RDS CAs.',
          ),
        caFile: z
          .string()
          .min(1)
          .optional()
          .describe('Path of a PEM file with the CA certificate(s) to trust (instead of the standard roots and the Amazon RDS CA bundles).'),
      })
      .optional()
      .describe('TLS settings for the connection.'),
  })
  .describe('A PostgreSQL database to connect to.');

const tableGlobs = z
  .array(z.string().min(1).describe('A table name or glob ("*", "order_?", "tmp_*").'))
  .default(['*'])
  .describe('Tables of the schema, as names or globs.');

const tableOptions = z
  .strictObject({
    where: z
      .string()
      .min(1)
      .superRefine((where, ctx) => {
        const problem = whereProblem(where);
        if (problem) ctx.addIssue({ code: 'custom', message: problem });
      })
      .optional()
      .describe('SQL condition choosing the rows to migrate.'),
    columns: z.array(z.string().min(1)).min(1).optional().describe('Only these columns are migrated.'),
    excludeColumns: z.array(z.string().min(1)).optional().describe('These columns are not migrated.'),
    operations: z
      .array(z.enum(['insert', 'update', 'delete', 'truncate']))
      .min(1)
      .refine((ops) => new Set(ops).size === ops.length, { error: 'must not list an operation twice' })
      .optional()
      .describe('Change operations replicated during CDC.'),
  })
  .refine((t) => !(t.columns && t.excludeColumns), { error: 'give either columns or excludeColumns, not both' })
  .describe('Options for one table.');

const objectsSchema = z
  .strictObject({
    include: z
      .array(z.strictObject({ schema: schemaName.describe('Schema name.'), tables: tableGlobs }))
      .default([])
      .describe('Schemas and tables to migrate; empty means every non-system schema.'),
    exclude: z
      .array(z.strictObject({ schema: schemaName.describe('Schema name.'), tables: tableGlobs }))
      .default([])
      .describe('Schemas and tables to leave out.'),
    tables: z.record(schemaTableKey, tableOptions).default({}).describe('Per-table options, keyed "schema.table".'),
    // Issue 15 item 2.
    excludedColumns: z
      .enum(['keep', 'drop'])
      .optional()
      .describe(
        'Columns that a table\'s columns/excludeColumns leave out: "keep" (the default) creates them on the target, where they stay at their default; "drop" does not create them (indexes, constraints and triggers using them are skipped and reported).',
      ),
  })
  .describe('What to migrate.');

const mappingSchema = z
  .strictObject({
    schemas: z
      .record(z.string(), z.string().min(1))
      .default({})
      .describe('Schema renames: source name → target name. Several source schemas may go into one target schema.'),
    tables: z
      .record(schemaTableKey, z.string().min(1))
      .default({})
      .describe('Table (or view, sequence) renames: "schema.table" → target name, in the schema its source schema maps to.'),
    columns: z
      .record(schemaTableKey, z.record(z.string(), z.string().min(1)))
      .default({})
      .describe('Column renames per table: "schema.table" → { source column → target column }.'),
    nameCase: z
      .enum(['source', 'lower', 'upper'])
      .default('source')
      .describe(
        'Case of the target names of schemas, tables, views, sequences, indexes, constraints and columns that the mapping does not name: "source" keeps them, "lower" and "upper" change them. Explicit names are taken as written.',
      ),
  })
  .describe(
    'How names change between source and target. Objects are created under their source names and renamed once, after the load and before changes are applied; references by OID (views, defaults, constraints, triggers, policies) follow, function bodies do not.',
  );

const syncFlag = (value: boolean, what: string) => z.boolean().default(value).describe(`Create ${what} on the target.`);

const schemaSchema = z
  .strictObject({
    existingTables: z
      .enum(['error', 'ignore', 'truncate', 'drop'])
      .default('error')
      .describe('What to do when a table already exists on the target.'),
    replicaTriggers: z
      .enum(['disabled', 'fire'])
      .default('disabled')
      .describe(
        'Triggers and rules set to ENABLE ALWAYS or ENABLE REPLICA fire even in the replica-role sessions pgferry writes with. ' +
          '"disabled": in the CDC modes they are created disabled and get their source state at cutover, so they do not fire for replicated rows; ' +
          '"fire": they are created in their source state and fire for every replicated row.',
      ),
    sync: z
      .strictObject({
        indexes: syncFlag(true, 'indexes'),
        constraints: syncFlag(true, 'constraints'),
        foreignKeys: syncFlag(true, 'foreign keys'),
        triggers: syncFlag(true, 'triggers'),
        views: syncFlag(true, 'views'),
        functions: syncFlag(true, 'functions'),
        sequences: syncFlag(true, 'sequences'),
        materializedViews: syncFlag(true, 'materialized views'),
        roles: syncFlag(false, 'roles'),
      })
      .prefault({})
      .describe('Which schema objects are created on the target.'),
  })
  .describe('Schema migration.');

const fullLoadSchema = z
  .strictObject({
    parallelism: intBetween(1, 64).default(4).describe('Tables or table parts copied at once.'),
    splitTablesLargerThan: size.prefault('512MB').describe('Tables larger than this are copied in parallel parts.'),
    maxRowsPerSecond: rowsPerSecond
      .optional()
      .describe('Limit on rows read from the source per second, shared by the copy workers running; pgferry throttle changes it while the load runs.'),
    maxBytesPerSecond: size
      .optional()
      .describe('Limit on bytes read from the source per second, shared by the copy workers running; pgferry throttle changes it while the load runs.'),
    retries: intBetween(0, 10).default(3).describe('Retries of a failed table copy.'),
  })
  .describe('The initial copy of the data.');

const cdcSchema = z
  .strictObject({
    slotName: pgIdentifier.optional().describe('Name of the logical replication slot on the source.'),
    publicationName: pgIdentifier.optional().describe('Name of the publication on the source.'),
    conflictPolicy: z
      .enum(['error', 'ignore', 'overwrite'])
      .default('error')
      .describe('What to do when a change conflicts with a row on the target.'),
    batch: z
      .strictObject({
        maxRows: z.int().min(1).default(50000).describe('Rows per applied batch at most.'),
        maxBytes: size.prefault('64MB').describe('Bytes per applied batch at most.'),
        maxDelayMs: intBetween(0, 60000).default(200).describe('Longest wait before applying a partial batch.'),
      })
      .prefault({})
      .describe('How changes are batched when applied.'),
    retryWindowMinutes: intBetween(1, 1440)
      .default(120)
      .describe(
        'How long an outage of the source or the target (a restart, a failover, lost connections) is waited out before the run gives up: the CDC streamer resumes from its checkpoint, and every workflow step is tried again, within this window.',
      ),
    heartbeatTimeoutSeconds: intBetween(2, 3600)
      .default(60)
      .describe('A streamer silent for this long is restarted; it resumes from the target checkpoint.'),
    keepSlotOnFailure: z.boolean().default(false).describe('Keep the replication slot when the migration fails.'),
    resumeSlot: z.boolean().default(false).describe('Resume from an existing replication slot of the same name.'),
    // The slot's retained WAL (engine/cdc/retained-wal.ts).
    maxRetainedWal: size
      .optional()
      .describe(
        'Alarm when the replication slot holds back more WAL than this on the source (during the load, CDC and a pause): an event, a warning in status and the RetainedWalOverThreshold metric. Without it, the alarm still fires at 80% of the source\'s max_slot_wal_keep_size, or when the slot\'s wal_status is "unreserved".',
      ),
    dropSlotAboveMaxRetainedWal: z
      .boolean()
      .default(false)
      .describe(
        'Above cdc.maxRetainedWal, fail the migration and drop its replication slot to free the source\'s WAL (a full reload is then needed). Off by default: the slot is only ever dropped by your choice.',
      ),
    // Flow control (issue 15, item 3; engine/flow/).
    maxRowsPerSecond: rowsPerSecond
      .optional()
      .describe('Limit on row changes applied per second; when over, the applier waits and the stream is held back. pgferry throttle changes it while the run goes on.'),
    maxBytesPerSecond: size
      .optional()
      .describe('Limit on bytes of the change stream decoded per second; when over, the applier waits. pgferry throttle changes it while the run goes on.'),
    ddl: z
      .enum(['replicate', 'pause', 'error'])
      .default('replicate')
      .describe(
        'Schema changes on the source during CDC (captured by an event trigger): "replicate" runs them on the target in commit order; "pause" stops replication before each one (apply it by hand, then `pgferry resume`, which skips it); "error" stops replication at each one until this is changed.',
      ),
  })
  .refine((cdc) => !cdc.dropSlotAboveMaxRetainedWal || cdc.maxRetainedWal !== undefined, {
    error: 'cdc.dropSlotAboveMaxRetainedWal needs cdc.maxRetainedWal: set the size above which the slot is dropped, e.g. "50GB"',
    path: ['dropSlotAboveMaxRetainedWal'],
  })
  .describe('Change data capture; used when mode is "full+cdc" or "cdc".');

const compareSchema = z
  .strictObject({
    enabled: z.boolean().default(true).describe('Compare source and target after the full load.'),
    method: z.enum(['checksum', 'count']).default('checksum').describe('Compare row checksums or only row counts.'),
    chunkRows: z.int().min(1000).default(100000).describe('Rows compared per chunk.'),
    maxDifferencesReported: intBetween(1, 10000).default(100).describe('Differences listed in the report at most.'),
  })
  .describe('Comparison of source and target.');

const cutoverSchema = z
  .strictObject({
    mode: z.enum(['manual', 'auto']).default('manual').describe('Wait for a person to cut over, or cut over by itself.'),
    maxLagSeconds: z
      .number()
      .positive()
      .default(5)
      .describe('CDC lag below which cutover may start; after the comparison passes at the cutover request it may also be as long as the passes took (that lag is drained behind the fence).'),
    fenceSource: z
      .boolean()
      .default(false)
      .describe(
        'Fence the source at cutover: writes to the migrated tables are refused (a trigger; pgferry\'s replica-role appliers pass), new sessions start read-only and other sessions are ended. Lifted by pgferry fallback, pgferry finish, or cleanup (pgferry stop).',
      ),
    syncSequences: z.boolean().default(true).describe('Set target sequences from the source at cutover.'),
    finalCompare: z
      .boolean()
      .default(true)
      .describe('Compare source and target once more at cutover, behind the fence: only the rows changed since the comparison while replicating, and the tables that had no key or had differed.'),
    reverse: z
      .boolean()
      .default(false)
      .describe(
        'Arm reverse replication at cutover: changes made on the target afterwards are applied back to the source, so `pgferry fallback` can return to it without losing a write. Needs fenceSource.',
      ),
    switch: z
      .strictObject({
        secret: secretRef.describe('The secret the application reads its database connection from (a JSON object with host, port and dbname).'),
      })
      .optional()
      .describe("Point the application at the target once it is ready (and back at the source on fallback) by rewriting host, port and dbname in this secret; other keys are kept."),
  })
  .describe('Switching applications from source to target.');

const alertsSchema = z
  .strictObject({
    lagThresholdSeconds: z
      .int()
      .min(1)
      .default(300)
      .describe('Alert when CDC lag exceeds this many seconds (the ReplicationLagOverThreshold metric, which the deployment\'s lag alarm watches).'),
    snsTopicArn: z
      .string()
      .regex(SNS_TOPIC_ARN, { error: 'must be an SNS topic ARN (arn:aws:sns:REGION:ACCOUNT:NAME)' })
      .optional()
      .describe(
        'SNS topic that receives this migration\'s alerts: lag over lagThresholdSeconds (and back under), a failure, a pause, retained WAL over cdc.maxRetainedWal or near max_slot_wal_keep_size (and back under); each once per episode. On AWS the topic must be in the deployment\'s alertTopicArns context; locally the alerts are printed and recorded as events.',
      ),
  })
  .describe('Alerts.');

export const migrationSpecSchema = z
  .strictObject({
    name: z
      .string()
      .regex(NAME, { error: 'must be 4–50 characters: a letter first, then letters, digits, "-" or "_"' })
      .describe('Name of the migration: 4–50 characters, a letter first, then letters, digits, "-" or "_".'),
    description: z
      .string()
      .max(256)
      .regex(NO_FORBIDDEN_CHARS, { error: (issue) => forbiddenCharsMessage(issue.input) })
      .optional()
      .describe('Free text, at most 256 characters, without = < > & \' ".'),
    mode: z
      .enum(['full', 'full+cdc', 'cdc'])
      .default('full')
      .describe('"full": copy once; "full+cdc": copy, then replicate changes; "cdc": replicate changes only.'),
    startAt: z
      .string()
      .regex(RFC3339, { error: TIMESTAMP_MESSAGE })
      .refine(isRealTimestamp, { error: TIMESTAMP_MESSAGE })
      .optional()
      .describe('When to start, as an RFC 3339 timestamp with a time zone; absent means now.'),
    source: endpointSchema.describe('The database to migrate from.'),
    target: endpointSchema.describe('The database to migrate to.'),
    objects: objectsSchema.prefault({}),
    mapping: mappingSchema.prefault({}),
    schema: schemaSchema.prefault({}),
    fullLoad: fullLoadSchema.prefault({}),
    cdc: cdcSchema.prefault({}),
    compare: compareSchema.prefault({}),
    cutover: cutoverSchema.prefault({}),
    alerts: alertsSchema.prefault({}),
  })
  .superRefine(
    (spec, ctx) => {
      const { source, target } = spec;
      if (typeof source?.secret === 'string' && source.secret === target?.secret && source.database === target.database) {
        ctx.addIssue({ code: 'custom', path: ['target'], message: 'source and target are the same database' });
      }
      if (spec.cutover?.reverse && spec.mode === 'full') {
        ctx.addIssue({ code: 'custom', path: ['cutover', 'reverse'], message: 'needs change data capture: set mode to "full+cdc" or "cdc"' });
      }
      if (spec.cutover?.switch?.secret.startsWith('env:')) {
        ctx.addIssue({
          code: 'custom',
          path: ['cutover', 'switch', 'secret'],
          message: 'an environment variable cannot be rewritten: give the Secrets Manager ARN (or, locally, the file:PATH) the application reads',
        });
      }
      if (spec.cutover?.reverse && !spec.cutover.fenceSource) {
        ctx.addIssue({
          code: 'custom',
          path: ['cutover', 'reverse'],
          message: 'needs cutover.fenceSource: true (while changes flow back, only the reverse stream may write to the source)',
        });
      }
    },
    { when: ({ value }) => typeof value === 'object' && value !== null },
  )
  .describe('A pgferry migration: what to copy from which PostgreSQL database to which, and how.');

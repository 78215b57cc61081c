/**
 * The control schema in the target (`pgferry`): every statement on it, by table group.
 * Everything else imports from here.
 */
export { CONTROL_SCHEMA, controlSchemaExists, ensureControlSchema } from './schema.js';
export {
  beginMigration,
  findMigration,
  loadSpec,
  migrationRun,
  MigrationRunningError,
  migrationState,
  recordSnapshot,
  setPhase,
  specDigest,
  type MigrationRun,
  type MigrationState,
  type Phase,
} from './migrations.js';
export { recordEvent } from './events.js';
export {
  claimIndexJob,
  claimUnit,
  indexJobsReady,
  indexJobStates,
  loadedTables,
  loadNeedsSnapshot,
  loadSeconds,
  loadTotals,
  markIndexJobDone,
  markUnitDone,
  recordIndexJobFailure,
  recordUnitCopied,
  recordUnitFailure,
  replacePlan,
  reportUnitBytes,
  saveIndexJobs,
  startUnitAttempt,
  tableProgress,
  unfinishedUnits,
  type IndexJobInput,
  type PlannedTable,
  type TableProgress,
  type WorkUnit,
} from './units.js';
export {
  comparisonSummaries,
  loadComparisons,
  saveComparison,
  type ComparisonSummary,
  type RowDifference,
  type TableComparison,
} from './comparisons.js';
export { notMigratedObjects, recordSchemaObjects, schemaObjectCounts, type SchemaObjectResult, type SchemaObjectStatus } from './objects.js';
export {
  readReplicationStatus,
  recordFence,
  recordLiveComparison,
  recordReplicationError,
  recordRestart,
  registerReplication,
  requestApply,
  requestCutover,
  setDrainLsn,
  type ReplicationStatusRow,
} from './replication.js';
export { readProgress, type MigrationProgress } from './progress.js';

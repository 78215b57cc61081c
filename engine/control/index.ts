/**
 * The control schema in the target (`pgferry`): every statement on it, by table group
 * (docs/architecture.md, "The control schema"). Everything else imports from here.
 */
export * from './schema.js';
export * from './migrations.js';
export * from './events.js';
export * from './units.js';
export * from './comparisons.js';
export * from './objects.js';
export * from './replication.js';
export * from './checkpoint.js';
export * from './progress.js';
export * from './retained-wal.js';
export * from './runner.js';
export * from './ddl.js';
export * from './table-sync.js';
export * from './after-cutover.js';
export * from './reverse.js';
export * from './late-changes.js';
export * from './changed-keys.js';
export * from './flow.js';
export * from './mapping.js';

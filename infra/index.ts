export { PgferryMigration, type PgferryMigrationProps } from './pgferry-migration.js';
export { PgferryStack } from './pgferry-stack.js';

export { PgferryMigration, type FargateTaskSize, type PgferryMigrationProps } from './pgferry-migration.js';
export { PgferryStack } from './pgferry-stack.js';

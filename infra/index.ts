export { PgferryMigration, type FargateTaskSize, type PgferryMigrationProps } from './pgferry-migration.js';
export { PgferryMonitoring, type PgferryMonitoringProps } from './monitoring.js';
export { PgferryStack } from './pgferry-stack.js';

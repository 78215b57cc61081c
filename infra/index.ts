export { PgferryMigration, type PgferryMigrationProps } from './pgferry-migration.js';
export type { FargateTaskSize } from './tasks.js';
export { PgferryMonitoring, type PgferryMonitoringProps } from './monitoring.js';
export { PgferryStack } from './pgferry-stack.js';

/** Schema migration: catalog-driven DDL from the source, created on the target before (pre-data) and after (post-data) the full load. */
export { migratePreData, type PreDataResult } from './predata.js';
export { loadTimeIndexJobs, migratePostData, postDataLeftNothing, type PostDataResult, type TableJob } from './postdata.js';
export { copySequenceValues } from './sequences.js';
export { planSchema, type SchemaPlan } from './plan.js';
export { SchemaConflictError, type SchemaObjectResult, type SchemaObjectStatus } from './objects.js';

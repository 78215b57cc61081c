/** The SchemaPostData task: engine/steps/schema-post-data.ts. */
import { schemaPostDataStep } from '../engine/steps/schema-post-data.js';
import { runTask } from './task.js';

await runTask('post-data', schemaPostDataStep);

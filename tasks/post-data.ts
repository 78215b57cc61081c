/** The SchemaPostData task: engine/steps/schema-post-data.ts. */
import { schemaPostDataStep } from '../engine/steps/schema-post-data.js';
import { runTask } from './task.js';

// What already exists on the target is left alone: post-data that lost a side runs again for the rest.
await runTask('post-data', schemaPostDataStep, undefined, { redoOnOutage: true });

import { z } from 'zod';
import { schemaPreDataStep } from '../engine/steps/schema-pre-data.js';
import { lambdaHandler, specEvent, specMigration, specSecrets } from './handler.js';

export const handler = lambdaHandler({
  name: 'SchemaPreData',
  // `execution`: the workflow's $$.Execution.Id, recorded so that cleanup started by that
  // execution's status event knows the run is its own.
  input: specEvent.extend({ execution: z.string().optional(), resume: z.boolean().optional(), force: z.boolean().optional(), continues: z.string().nullish() }),
  secrets: specSecrets,
  migration: specMigration,
  handler: ({ spec, execution, resume, force, continues }, { secrets }) => schemaPreDataStep(spec, secrets, execution, { resume, force, continues }),
});

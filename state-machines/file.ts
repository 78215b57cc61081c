/** The checked-in workflow, generated from definition.ts (`npm run asl`): what CDK deploys and the local runner interprets. */
import { fileURLToPath } from 'node:url';

export const workflowFile = fileURLToPath(new URL('./migration.asl.json', import.meta.url));

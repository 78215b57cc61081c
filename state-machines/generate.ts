/**
 * `npm run asl`: writes state-machines/migration.asl.json from the description in
 * definition.ts. Run it after every change to the workflow and check both files in.
 */
import { writeFileSync } from 'node:fs';
import { definitionFile, definitionText } from './definition.js';

writeFileSync(definitionFile, definitionText());
console.log(`wrote ${definitionFile}`);

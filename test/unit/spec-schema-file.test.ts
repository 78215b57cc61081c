import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { specJsonSchema } from '../../engine/spec/index.js';

const published = join(dirname(fileURLToPath(import.meta.url)), '../../spec.schema.json');

describe('spec.schema.json', () => {
  it('is the JSON Schema of the spec as the code defines it (regenerate: node bin/pgferry.js spec-schema > spec.schema.json)', () => {
    expect(JSON.parse(readFileSync(published, 'utf8'))).toEqual(specJsonSchema());
  });
});

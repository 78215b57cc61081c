/**
 * The whole template `cdk synth` produces from the repository's cdk.json context, as a reviewed
 * file: any change to the deployed resources shows up as a diff of
 * __snapshots__/infra-snapshot.template.json (`npx vitest run -u` accepts it). Asset hashes are
 * normalized, so changes to the code in lambdas/, tasks/ or engine/ leave it alone.
 */
import { readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { cdkTestApps, repoRoot } from '../support/infra.js';

const { synthStack } = cdkTestApps('snapshot');

/** Asset hashes (S3 keys of the Lambda bundles, tags of the task image) depend on file contents. */
function normalizeTemplate(template: unknown): unknown {
  return JSON.parse(JSON.stringify(template).replace(/\b[0-9a-f]{64}\b/g, '<asset-hash>'));
}

function synthTemplate(context: Record<string, unknown>): unknown {
  // Without bundling (the bundles' hashes are normalized anyway) and without a Docker build.
  const { template } = synthStack(context);
  return template.toJSON();
}

describe('PgferryStack template', () => {
  it('matches the reviewed snapshot, whatever the code in the assets', async () => {
    const cdkJson = JSON.parse(readFileSync(join(repoRoot, 'cdk.json'), 'utf8')) as { context: Record<string, unknown> };
    const template = normalizeTemplate(synthTemplate(cdkJson.context));
    const text = JSON.stringify(template, null, 2);
    expect(text).not.toMatch(/[0-9a-f]{64}/);
    // No path of this machine in the template.
    expect(text).not.toContain(repoRoot);
    expect(text).not.toContain(tmpdir());
    await expect(`${text}\n`).toMatchFileSnapshot('./__snapshots__/infra-snapshot.template.json');
  });

  it('normalizes only the asset hashes', () => {
    const hash = 'ab'.repeat(32);
    expect(normalizeTemplate({ S3Key: `${hash}.zip`, Image: `repo:${hash}`, Other: 'ab'.repeat(31), Name: 'pgferry-0123abcd' })).toEqual({
      S3Key: '<asset-hash>.zip',
      Image: 'repo:<asset-hash>',
      Other: 'ab'.repeat(31),
      Name: 'pgferry-0123abcd',
    });
  });
});

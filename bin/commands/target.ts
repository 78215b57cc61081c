/** The local commands that act on a running migration reach its state in the target's control schema. */
import type pg from 'pg';
import { connectSide, type SecretsProvider } from '../../engine/connect/index.js';
import type { MigrationSpec } from '../../engine/spec/index.js';
import { DefaultSecretsProvider } from '../../platform/secrets/index.js';
import { EXIT_USAGE } from '../exit-codes.js';
import type { Out } from '../format.js';
import { readSpecForChecks } from '../spec-file.js';

export async function withTarget<T>(spec: MigrationSpec, secrets: SecretsProvider, body: (target: pg.Client) => Promise<T>): Promise<T> {
  const target = await connectSide('target', spec.target, secrets, { applicationName: 'pgferry-cli', retryWindowMs: 0 });
  try {
    return await body(target);
  } finally {
    await target.end();
  }
}

/** status and cutover read the spec only to find the target that holds the migration's state. */
export async function withControl(path: string, err: Out, body: (target: pg.Client, spec: MigrationSpec) => Promise<number>): Promise<number> {
  const spec = await readSpecForChecks(path, err);
  if (!spec) return EXIT_USAGE;
  return withTarget(spec, new DefaultSecretsProvider(), (target) => body(target, spec));
}

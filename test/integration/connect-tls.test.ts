/**
 * TLS against real servers: one without SSL (local clusters: "prefer" falls back to plaintext)
 * and one with a certificate of a private CA (for host "localhost"), to prove what each
 * mode verifies.
 */
import { chmodSync, chownSync, copyFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connectSide, type EndpointSettings } from '../../engine/connect/index.js';
import type { SslMode } from '../../engine/connect/credentials.js';
import { startClusters, type LocalCluster } from '../../local/dev/cluster.js';
import { DefaultSecretsProvider } from '../../platform/secrets/index.js';
import { scratchDir } from '../support/clusters.js';
import { failureOf } from '../support/failure.js';

const scratch = scratchDir('connect-tls');
const secrets = new DefaultSecretsProvider();
let plain: LocalCluster;
let tlsCluster: LocalCluster;
let caFile: string;

/**
 * A private CA and a certificate for "localhost" it signed, valid until 2126, made once with
 * openssl and kept as fixtures (the tests need no openssl). The CA's key was thrown away.
 */
const fixtures = join(dirname(fileURLToPath(import.meta.url)), '../fixtures/tls');

function installCertificates(dir: string): { caFile: string; certFile: string; keyFile: string } {
  const keyFile = join(dir, 'server.key');
  const certFile = join(dir, 'server.pem');
  copyFileSync(join(fixtures, 'server.key'), keyFile);
  copyFileSync(join(fixtures, 'server.pem'), certFile);
  chmodSync(dir, 0o755);
  chmodSync(keyFile, 0o600);
  // The clusters run as an unprivileged user when we are root: the key must be theirs.
  if (process.getuid?.() === 0) for (const file of [keyFile, certFile]) chownSync(file, 65534, 65534);
  return { caFile: join(fixtures, 'ca.pem'), certFile, keyFile };
}

beforeAll(async () => {
  const certificates = installCertificates(scratch.dir);
  caFile = certificates.caFile;
  [plain, tlsCluster] = await startClusters([
    { major: 17, label: 'no-ssl' },
    { major: 17, label: 'ssl', settings: { ssl: 'on', ssl_cert_file: certificates.certFile, ssl_key_file: certificates.keyFile } },
  ]);
});

afterAll(async () => {
  await Promise.all([plain?.stop(), tlsCluster?.stop()]);
  scratch.remove();
});

/** Connects with the given settings and says whether the session is encrypted. */
async function sessionSsl(cluster: LocalCluster, secretFields: Record<string, unknown>, tls?: EndpointSettings['tls']): Promise<boolean> {
  const secret = scratch.secretFor(`s${Math.random().toString(36).slice(2)}`, cluster, secretFields);
  const client = await connectSide('source', { secret, tls }, secrets, { retryWindowMs: 0 });
  try {
    const { rows } = await client.query<{ ssl: boolean }>('SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()');
    return rows[0]!.ssl;
  } finally {
    await client.end();
  }
}

describe('a server without SSL (local clusters)', () => {
  it('prefer, the default, falls back to plaintext', async () => {
    expect(await sessionSsl(plain, {})).toBe(false);
  });

  it.each<SslMode>(['require', 'verify-full'])('%s refuses to go on without TLS, readably', async (mode) => {
    const error = await failureOf(sessionSsl(plain, {}, { mode }));
    expect(error.name).toBe('pgferry.ConnectionFailed');
    expect(error.message).toMatch(/does not support SSL/);
    expect(error.message).not.toContain(plain.connection.password);
  });
});

describe('a server with a certificate of a private CA', () => {
  it('prefer encrypts', async () => {
    expect(await sessionSsl(tlsCluster, { host: 'localhost' })).toBe(true);
  });

  it('verify-full succeeds with the CA file and the host name of the certificate', async () => {
    expect(await sessionSsl(tlsCluster, { host: 'localhost' }, { mode: 'verify-full', caFile })).toBe(true);
    expect(await sessionSsl(tlsCluster, { host: 'localhost', sslmode: 'verify-full', sslrootcert: caFile })).toBe(true);
  });

  it('verify-full without the CA file trusts only the public roots and the RDS CAs: refused, with the remedy', async () => {
    const error = await failureOf(sessionSsl(tlsCluster, { host: 'localhost' }, { mode: 'verify-full' }));
    expect(error.name).toBe('pgferry.ConnectionFailed');
    expect(error.message).toMatch(/certificate/i);
    expect(error.message).toContain('TLS verification failed: give the server\'s CA in "source.tls.caFile"');
  });

  it('verify-ca checks the chain but not the host; verify-full checks both', async () => {
    expect(await sessionSsl(tlsCluster, { host: '127.0.0.1' }, { mode: 'verify-ca', caFile })).toBe(true);
    const error = await failureOf(sessionSsl(tlsCluster, { host: '127.0.0.1' }, { mode: 'verify-full', caFile }));
    expect(error.message).toMatch(/IP: 127\.0\.0\.1 is not in the cert's list|does not match certificate/);
  });
});

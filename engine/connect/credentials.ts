import { inspect } from 'node:util';
import { PgferryError } from '../errors.js';

/** Where a secret lives: a Secrets Manager ARN, `env:NAME` or `file:PATH`. */
export type SecretRef = string;

/** Fetches the text of a secret. Implementations live in platform/secrets. */
export interface SecretsProvider {
  /** `fresh`: read it from its store now, past any cache (the password was refused: it may have been rotated). */
  getSecretString(ref: SecretRef, options?: { fresh?: boolean }): Promise<string>;
}

/** Writes the text of a secret (cutover.switch rewrites the application's secret). Implementations live in platform/secrets. */
export interface SecretWriter {
  putSecretString(ref: SecretRef, text: string): Promise<void>;
}

export type SslMode = 'disable' | 'allow' | 'prefer' | 'require' | 'verify-ca' | 'verify-full';
const sslModes: readonly SslMode[] = ['disable', 'allow', 'prefer', 'require', 'verify-ca', 'verify-full'];

/**
 * Database credentials read from a secret. The password is held privately and is left out
 * of JSON, `util.inspect` and string conversion, so logging the object cannot leak it.
 */
export class DatabaseCredentials {
  readonly #password: string;

  constructor(
    readonly secretRef: SecretRef,
    readonly host: string,
    readonly port: number,
    readonly username: string,
    password: string,
    readonly dbname: string,
    readonly sslmode?: SslMode,
    readonly sslrootcert?: string,
  ) {
    this.#password = password;
  }

  get password(): string {
    return this.#password;
  }

  /** `host:port/dbname as user`, for messages. */
  describe(database = this.dbname): string {
    return `${this.host}:${this.port}/${database} as ${this.username}`;
  }

  toJSON(): Record<string, unknown> {
    const { secretRef, host, port, username, dbname, sslmode } = this;
    return { secretRef, host, port, username, dbname, sslmode, password: '[redacted]' };
  }

  toString(): string {
    return `DatabaseCredentials(${this.secretRef}: ${this.describe()})`;
  }

  [inspect.custom](): string {
    return this.toString();
  }
}

export class SecretError extends PgferryError {
  constructor(ref: SecretRef, problem: string) {
    super('pgferry.SecretInvalid', `Secret ${ref}: ${problem}`);
  }
}

/**
 * Parses the text of a secret: the RDS-style JSON (`host, port, username, password, dbname`,
 * optional `sslmode`, `sslrootcert`; `engine` and other RDS fields are ignored) or, for
 * `env:`/`file:` secrets, a `postgres://` URI. Errors name the secret and the field, never
 * the secret's content.
 */
export function parseCredentials(ref: SecretRef, text: string): DatabaseCredentials {
  const trimmed = text.trim();
  if (/^postgres(ql)?:\/\//i.test(trimmed)) {
    if (ref.startsWith('arn:')) {
      throw new SecretError(ref, 'a Secrets Manager secret must hold JSON with host, port, username, password and dbname, not a URI');
    }
    return fromUri(ref, trimmed);
  }
  let value: unknown;
  try {
    value = JSON.parse(trimmed);
  } catch {
    throw new SecretError(
      ref,
      'is neither JSON ({"host", "port", "username", "password", "dbname"}) nor a postgres:// URI',
    );
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new SecretError(ref, 'must be a JSON object with host, port, username, password and dbname');
  }
  return fromFields(ref, value as Record<string, unknown>);
}

function fromFields(ref: SecretRef, fields: Record<string, unknown>): DatabaseCredentials {
  const problems: string[] = [];
  const text = (key: string, required: boolean): string | undefined => {
    const v = fields[key];
    if (v === undefined || v === null || v === '') {
      if (required) problems.push(`field "${key}" is missing`);
      return undefined;
    }
    if (typeof v !== 'string') {
      problems.push(`field "${key}" must be a string`);
      return undefined;
    }
    return v;
  };
  const host = text('host', true);
  const username = text('username', true);
  const password = text('password', true);
  const dbname = text('dbname', false) ?? 'postgres';
  const sslmode = text('sslmode', false);
  const sslrootcert = text('sslrootcert', false);
  const port = parsePort(fields.port ?? 5432);
  if (port === undefined) problems.push('field "port" must be a port number (1–65535)');
  if (sslmode !== undefined && !sslModes.includes(sslmode as SslMode)) {
    problems.push(`field "sslmode" must be one of ${sslModes.join(', ')}`);
  }
  if (problems.length > 0) throw new SecretError(ref, problems.join('; '));
  return new DatabaseCredentials(ref, host!, port!, username!, password!, dbname, sslmode as SslMode | undefined, sslrootcert);
}

function parsePort(value: unknown): number | undefined {
  const port = typeof value === 'string' && /^\d+$/.test(value) ? Number(value) : value;
  return typeof port === 'number' && Number.isInteger(port) && port > 0 && port < 65536 ? port : undefined;
}

function fromUri(ref: SecretRef, uri: string): DatabaseCredentials {
  let url: URL;
  try {
    url = new URL(uri);
  } catch {
    throw new SecretError(ref, 'holds a postgres:// URI that cannot be parsed');
  }
  const dbname = decodeURIComponent(url.pathname.replace(/^\//, ''));
  return fromFields(ref, {
    host: decodeURIComponent(url.hostname),
    port: url.port || 5432,
    username: decodeURIComponent(url.username),
    password: decodeURIComponent(url.password),
    dbname: dbname || undefined,
    sslmode: url.searchParams.get('sslmode') ?? undefined,
    sslrootcert: url.searchParams.get('sslrootcert') ?? undefined,
  });
}

/** Removes every occurrence of the given secret values from a text (last line of defence for messages). */
export function redact(text: string, secrets: readonly string[]): string {
  let result = text;
  for (const secret of secrets) {
    if (secret.length >= 4) result = result.split(secret).join('[redacted]');
    const encoded = encodeURIComponent(secret);
    if (encoded !== secret && encoded.length >= 4) result = result.split(encoded).join('[redacted]');
  }
  return result;
}

/**
 * The SecretsProvider for every kind of SecretRef: Secrets Manager ARNs through the AWS SDK,
 * `env:NAME` from the environment and `file:PATH` from disk (relative paths from the
 * working directory). Errors name the reference, never the content.
 */
import { readFile, rename, stat, writeFile } from 'node:fs/promises';
import { resolve } from 'node:path';
import { SecretError, type SecretRef, type SecretsProvider, type SecretWriter } from '../../engine/connect/credentials.js';

type SecretsManagerLike = {
  send(command: unknown): Promise<{ SecretString?: string }>;
};

interface SecretsManagerSdk {
  client: SecretsManagerLike;
  GetSecretValueCommand: new (input: { SecretId: string }) => unknown;
  PutSecretValueCommand: new (input: { SecretId: string; SecretString: string }) => unknown;
}

export class DefaultSecretsProvider implements SecretsProvider, SecretWriter {
  #secretsManager?: Promise<SecretsManagerSdk>;

  constructor(private readonly env: NodeJS.ProcessEnv = process.env) {}

  /** Reads the secret at every call: nothing is cached, so every read is fresh. */
  async getSecretString(ref: SecretRef): Promise<string> {
    if (ref.startsWith('env:')) return this.fromEnv(ref);
    if (ref.startsWith('file:')) return this.fromFile(ref);
    if (ref.startsWith('arn:')) return this.fromSecretsManager(ref);
    throw new SecretError(ref, 'is not a secret reference: use a Secrets Manager ARN, "env:NAME" or "file:PATH"');
  }

  /** Writes a new value (cutover.switch): a new version of a Secrets Manager secret, or the file replaced whole; an environment variable cannot be written. */
  async putSecretString(ref: SecretRef, text: string): Promise<void> {
    if (ref.startsWith('file:')) {
      const path = resolve(ref.slice('file:'.length));
      const mode = await stat(path).then((s) => s.mode & 0o777, () => 0o600);
      const temporary = `${path}.pgferry-${process.pid}`;
      await writeFile(temporary, text, { mode });
      await rename(temporary, path);
      return;
    }
    if (ref.startsWith('arn:')) {
      const { client, PutSecretValueCommand } = await this.sdk();
      try {
        await client.send(new PutSecretValueCommand({ SecretId: ref, SecretString: text }));
      } catch (error) {
        throw new SecretError(ref, `cannot be written to Secrets Manager (${(error as Error).name}): check that the role may put its value (secretsmanager:PutSecretValue)`);
      }
      return;
    }
    throw new SecretError(ref, 'cannot be rewritten: cutover.switch needs a Secrets Manager ARN or a file: secret');
  }

  private sdk(): Promise<SecretsManagerSdk> {
    this.#secretsManager ??= import('@aws-sdk/client-secrets-manager').then((sdk) => ({
      client: new sdk.SecretsManagerClient({}) as SecretsManagerLike,
      GetSecretValueCommand: sdk.GetSecretValueCommand as never,
      PutSecretValueCommand: sdk.PutSecretValueCommand as never,
    }));
    return this.#secretsManager;
  }

  private fromEnv(ref: SecretRef): string {
    const name = ref.slice('env:'.length);
    const value = this.env[name];
    if (value === undefined || value === '') throw new SecretError(ref, `environment variable ${name} is not set`);
    return value;
  }

  private async fromFile(ref: SecretRef): Promise<string> {
    const path = resolve(ref.slice('file:'.length));
    try {
      return await readFile(path, 'utf8');
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      const reason = code === 'ENOENT' ? 'does not exist' : code === 'EACCES' ? 'is not readable' : `cannot be read (${code})`;
      throw new SecretError(ref, `file ${path} ${reason}`);
    }
  }

  private async fromSecretsManager(ref: SecretRef): Promise<string> {
    const { client, GetSecretValueCommand } = await this.sdk();
    let response: { SecretString?: string };
    try {
      response = await client.send(new GetSecretValueCommand({ SecretId: ref }));
    } catch (error) {
      const name = (error as Error).name;
      throw new SecretError(ref, `cannot be read from Secrets Manager (${name}): check that it exists and that the role may read it`);
    }
    if (!response.SecretString) throw new SecretError(ref, 'has no SecretString (binary secrets are not supported)');
    return response.SecretString;
  }
}

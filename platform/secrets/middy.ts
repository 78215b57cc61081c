/**
 * Secrets Manager secrets of a Lambda invocation, fetched and cached through
 * @middy/secrets-manager. Which secrets a run needs is known only from its event (the spec's
 * source.secret and target.secret), so the middleware cannot be configured once at import:
 * there is one instance per secret ARN, created on first use, whose cache entry (keyed by the
 * ARN) lives across invocations of the warm Lambda.
 *
 * The cache is timer-free: middy's positive `cacheExpiry` re-fetches on a timer that keeps the
 * process alive (the local runner calls these handlers inside the CLI). Instead the cache never
 * expires by itself (`cacheExpiry: -1`) and an entry older than `cacheMs` is cleared before use.
 */
import type { MiddlewareObj, Request } from '@middy/core';
import { clearCache, getCache } from '@middy/util';
import { SecretError, type SecretRef, type SecretsProvider } from '../../engine/connect/credentials.js';

/** How long a fetched secret is used before it is read again. */
export const SECRET_CACHE_MS = 5 * 60_000;
const CACHE_KEY_PREFIX = 'pgferry-secret:';
const INTERNAL_KEY_PREFIX = 'pgferrySecret:';

export const isSecretsManagerRef = (ref: SecretRef): boolean => ref.startsWith('arn:');

export interface SecretsManagerCacheOptions {
  /** How long a fetched secret is used. Default 5 minutes. */
  cacheMs?: number;
  /** Cached secrets kept at most (the oldest go first). Default 100. */
  maxSecrets?: number;
  now?: () => number;
}

interface Entry {
  middleware: Promise<MiddlewareObj>;
  fetchedAt?: number;
}

export class SecretsManagerCache {
  readonly #entries = new Map<SecretRef, Entry>();
  readonly #cacheMs: number;
  readonly #maxSecrets: number;
  readonly #now: () => number;

  constructor(options: SecretsManagerCacheOptions = {}) {
    this.#cacheMs = options.cacheMs ?? SECRET_CACHE_MS;
    this.#maxSecrets = options.maxSecrets ?? 100;
    this.#now = options.now ?? Date.now;
  }

  /**
   * Runs the secrets-manager middleware of every ARN for this request (a fetch, or the cached
   * value) and returns a SecretsProvider that serves them; other references go to `fallback`.
   * Fetch failures surface when the handler reads the secret, as a SecretError naming the ARN.
   */
  async provider(request: Request, arns: readonly SecretRef[], fallback: SecretsProvider): Promise<SecretsProvider> {
    const fetched = new Map<SecretRef, Promise<unknown>>();
    for (const arn of new Set(arns)) {
      const entry = this.#entry(arn);
      if (entry.fetchedAt !== undefined && this.#now() - entry.fetchedAt >= this.#cacheMs) this.invalidate([arn]);
      fetched.set(arn, (await this.#fetch(request, arn)).value);
    }
    // A fresh read (a refused password) goes past the cache, and the cache keeps what it read.
    return new FetchedSecretsProvider(fetched, fallback, async (arn) => {
      this.invalidate([arn]);
      return (await this.#fetch(request, arn)).value;
    });
  }

  /** The secret's value through the middleware: the cached one, or a fetch when there is none. */
  async #fetch(request: Request, arn: SecretRef): Promise<{ value: Promise<unknown> }> {
    const entry = this.#entry(arn);
    if (getCache(CACHE_KEY_PREFIX + arn).value === undefined) entry.fetchedAt = this.#now();
    const middleware = await entry.middleware;
    await middleware.before!(request);
    const value = Promise.resolve((request.internal as Record<string, unknown>)[INTERNAL_KEY_PREFIX + arn]);
    // Read (and reported) by the provider; a secret the handler never reads must not be an unhandled rejection.
    value.catch(() => undefined);
    return { value };
  }

  /** Forgets the cached values, e.g. after a password was refused (the secret may have been rotated). */
  invalidate(arns: readonly SecretRef[]): void {
    for (const arn of arns) {
      clearCache(CACHE_KEY_PREFIX + arn);
      const entry = this.#entries.get(arn);
      if (entry) entry.fetchedAt = undefined;
    }
  }

  #entry(arn: SecretRef): Entry {
    let entry = this.#entries.get(arn);
    if (entry) {
      // Most recently used last, so eviction takes the least recently used.
      this.#entries.delete(arn);
      this.#entries.set(arn, entry);
      return entry;
    }
    entry = {
      // Imported on first use: local runs with file:/env: secrets never load the SDK.
      middleware: import('@middy/secrets-manager').then(({ default: secretsManager }) =>
        secretsManager({
          fetchData: { [INTERNAL_KEY_PREFIX + arn]: arn },
          cacheKey: CACHE_KEY_PREFIX + arn,
          cacheExpiry: -1,
          disablePrefetch: true,
          setToContext: false,
        }) as MiddlewareObj,
      ),
    };
    entry.middleware.catch(() => undefined);
    this.#entries.set(arn, entry);
    while (this.#entries.size > this.#maxSecrets) {
      const oldest = this.#entries.keys().next().value!;
      this.#entries.delete(oldest);
      clearCache(CACHE_KEY_PREFIX + oldest);
    }
    return entry;
  }
}

/** Serves secrets fetched by the middleware; any other reference goes to the fallback provider. */
export class FetchedSecretsProvider implements SecretsProvider {
  constructor(
    private readonly fetched: Map<SecretRef, Promise<unknown>>,
    private readonly fallback: SecretsProvider,
    /** Fetches a secret again, past the cache. */
    private readonly refetch?: (ref: SecretRef) => Promise<unknown>,
  ) {}

  async getSecretString(ref: SecretRef, options: { fresh?: boolean } = {}): Promise<string> {
    if (!this.fetched.has(ref)) return this.fallback.getSecretString(ref, options);
    if (options.fresh && this.refetch) this.fetched.set(ref, this.refetch(ref));
    const pending = this.fetched.get(ref)!;
    let value: unknown;
    try {
      value = await pending;
    } catch (error) {
      const name = (error as Error)?.name || 'Error';
      throw new SecretError(ref, `cannot be read from Secrets Manager (${name}): check that it exists and that the role may read it`);
    }
    if (value === undefined || value === null || value === '') throw new SecretError(ref, 'has no SecretString (binary secrets are not supported)');
    // The middleware parses JSON secrets; the credentials parser reads text.
    return typeof value === 'string' ? value : JSON.stringify(value);
  }
}

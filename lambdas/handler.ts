/**
 * The one way a Lambda of pgferry is built: a middy handler around an engine function, with
 * these middlewares, in this order:
 *
 * 1. Powertools Logger: structured JSON logs with the Lambda context, the step and the
 *    migration name. Events are never logged (the spec holds only secret references, but an
 *    event is not a log line).
 * 2. Powertools Metrics: the cold-start metric (namespace and service from the POWERTOOLS_*
 *    environment the construct sets). Only in Lambda; local runs emit nothing.
 * 3. Input validation: the event is parsed with the zod schema the handler declares; every
 *    problem is listed with its path in one `pgferry.InvalidInput` error.
 * 4. Secrets: the Secrets Manager ARNs the event names are fetched through
 *    @middy/secrets-manager and cached across invocations (platform/secrets/middy.ts);
 *    `file:`/`env:` references (local runs) are read by DefaultSecretsProvider.
 * 5. Error names: errors keep their pgferry name (the ASL's Retry/Catch match on it); anything
 *    else becomes `pgferry.Internal` with its message, so Step Functions never sees a stack dump
 *    instead of a reason. Messages never contain secret values. A side out of reach
 *    (`pgferry.Unreachable`, which the workflow retries) becomes `pgferry.ConnectionFailed` once
 *    the state has been retried for longer than the spec's cdc.retryWindowMinutes since it was
 *    entered (the event's `stateEnteredTime`, `$$.State.EnteredTime`).
 *
 * The handler receives the parsed input and `{ secrets, logger, context }`. The local runner
 * calls the exported handler in-process with a context of its own: nothing here needs more
 * of a Lambda context than it gives.
 */
import { Logger } from '@aws-lambda-powertools/logger';
import { injectLambdaContext } from '@aws-lambda-powertools/logger/middleware';
import type { Metrics } from '@aws-lambda-powertools/metrics';
import { logMetrics } from '@aws-lambda-powertools/metrics/middleware';
import middy, { type MiddlewareObj, type Request } from '@middy/core';
import type { Context } from 'aws-lambda';
import { z } from 'zod';
import type { SecretRef, SecretsProvider, SecretWriter } from '../engine/connect/credentials.js';
import { isAuthenticationFailure, withinRetryWindow } from '../engine/connect/outage.js';
import { PgferryError } from '../engine/errors.js';
import { migrationSpecSchema } from '../engine/spec/index.js';
import { parseWithProblems, type SpecProblem } from '../engine/spec/problems.js';
import { createMetrics } from '../platform/observability.js';
import { DefaultSecretsProvider } from '../platform/secrets/index.js';
import { isSecretsManagerRef, SecretsManagerCache } from '../platform/secrets/middy.js';

export interface HandlerTools {
  /** Serves the secrets the definition's `secrets` named (Secrets Manager ARNs fetched and cached), and any other. */
  secrets: SecretsProvider;
  logger: Logger;
  context: Context;
}

export interface LambdaDefinition<TSchema extends z.ZodType, TResult> {
  /** The state (or function) name, for logs and messages. */
  name: string;
  /** Schema of the event; the handler receives its output. A function picks the schema by the event's shape. */
  input: TSchema | ((event: unknown) => TSchema);
  /** The secret references the handler will read, from the parsed input. */
  secrets?: (input: z.output<TSchema>) => readonly SecretRef[];
  /** The migration the invocation is about, for logs. */
  migration?: (input: z.output<TSchema>) => string | undefined;
  handler: (input: z.output<TSchema>, tools: HandlerTools) => Promise<TResult>;
}

/** Replacements for tests: by default the Logger and Metrics are configured from the environment. */
export interface LambdaHandlerOptions {
  logger?: Logger;
  /** A Metrics instance to flush after each invocation; null for none. Default: one in Lambda, none elsewhere. */
  metrics?: Metrics | null;
  secretsCache?: SecretsManagerCache;
  fallbackSecrets?: SecretsProvider;
}

/** The event of a state that gets the normalized spec (as ValidateSpec returned it). */
export const specEvent = z.object({ spec: migrationSpecSchema });
export type SpecEvent = z.output<typeof specEvent>;
/** Both sides' secrets of a spec-carrying event. */
export const specSecrets = (input: { spec: { source: { secret: string }; target: { secret: string } } }) => [
  input.spec.source.secret,
  input.spec.target.secret,
];
export const specMigration = (input: { spec: { name: string } }) => input.spec.name;

/** Both sides' secrets and the application's secret that cutover.switch rewrites. */
export const switchingSpecSecrets = (input: { spec: { source: { secret: string }; target: { secret: string }; cutover: { switch?: { secret: string } } } }) => [
  ...specSecrets(input),
  ...(input.spec.cutover.switch ? [input.spec.cutover.switch.secret] : []),
];

/** The handler's secrets, plus writing them (cutover.switch): a write goes straight to the store, past the cache. */
export function writableSecrets(secrets: SecretsProvider): SecretsProvider & SecretWriter {
  const writer = new DefaultSecretsProvider();
  return { getSecretString: (ref, options) => secrets.getSecretString(ref, options), putSecretString: (ref, text) => writer.putSecretString(ref, text) };
}

/** The input of a status step that looks again while its answer is "wait": for up to 14 minutes. */
export const waitUpToSecondsInput = z.number().min(0).max(840).default(0);

/** Time a waiting step keeps back from the function's timeout to answer after its last look. */
const ANSWER_MARGIN_MS = 15_000;

/** How long a waiting step may look again: what the workflow asked, within the function's remaining time. */
export function waitBudgetSeconds(waitUpToSeconds: number, context: Context | undefined): number {
  const remainingMs = typeof context?.getRemainingTimeInMillis === 'function' ? context.getRemainingTimeInMillis() - ANSWER_MARGIN_MS : Infinity;
  return Math.max(0, Math.min(waitUpToSeconds, remainingMs / 1000));
}

export class InvalidInputError extends PgferryError {
  constructor(
    readonly step: string,
    readonly problems: SpecProblem[],
  ) {
    const count = `${problems.length} problem${problems.length === 1 ? '' : 's'}`;
    super('pgferry.InvalidInput', [`The input of ${step} has ${count}:`, ...problems.map((p) => `  - ${p.path}: ${p.message}`)].join('\n'));
  }
}

/** Parses an event; every problem with its path in one InvalidInputError. */
export function parseInput<TSchema extends z.ZodType>(step: string, schema: TSchema, event: unknown): z.output<TSchema> {
  const result = parseWithProblems(schema, event, { subject: 'the input' });
  if (result.success) return result.data;
  throw new InvalidInputError(step, result.problems);
}

const inLambda = () => Boolean(process.env.AWS_LAMBDA_FUNCTION_NAME);

function defaultLogger(): Logger {
  // Locally the handlers run inside the CLI, whose output is for people: quiet unless asked.
  const level = process.env.POWERTOOLS_LOG_LEVEL || process.env.LOG_LEVEL;
  return new Logger({ logLevel: inLambda() || level ? undefined : 'SILENT' });
}

function defaultMetrics(logger: Logger): Metrics | null {
  if (!inLambda()) return null;
  return createMetrics({
    logger: {
      debug: (...args: unknown[]) => logger.debug(String(args[0])),
      info: (...args: unknown[]) => logger.info(String(args[0])),
      warn: (...args: unknown[]) => logger.warn(String(args[0])),
      error: (...args: unknown[]) => logger.error(String(args[0])),
    },
  });
}

/** One cache per Lambda process: a warm function reuses secrets across invocations. */
const sharedSecretsCache = new SecretsManagerCache();

const TOOLS = Symbol('pgferry.handlerTools');
type ToolsContext = Context & { [TOOLS]?: HandlerTools };

/** When the workflow entered the invoking state (`stateEnteredTime` of the event), if it says. */
function stateEnteredTime(event: unknown): Date | undefined {
  const value = (event as { stateEnteredTime?: unknown } | null)?.stateEnteredTime;
  return typeof value === 'string' ? new Date(value) : undefined;
}

/** The spec's retry window, when the input carries a spec. */
const retryWindowMinutes = (input: unknown) => (input as { spec?: { cdc?: { retryWindowMinutes?: number } } } | null)?.spec?.cdc?.retryWindowMinutes;

/** Builds a Lambda handler from its definition. */
export function lambdaHandler<TSchema extends z.ZodType, TResult>(
  definition: LambdaDefinition<TSchema, TResult>,
  options: LambdaHandlerOptions = {},
): middy.MiddyfiedHandler<unknown, TResult, Error, Context> {
  const logger = options.logger ?? defaultLogger();
  const metrics = options.metrics === undefined ? defaultMetrics(logger) : options.metrics;
  const secretsCache = options.secretsCache ?? sharedSecretsCache;
  const fallbackSecrets = options.fallbackSecrets ?? new DefaultSecretsProvider();
  const fetchedArns = new WeakMap<object, SecretRef[]>();
  const enteredAt = new WeakMap<object, Date | undefined>();
  const step = definition.name;

  const validation: MiddlewareObj<unknown, TResult, Error, Context> = {
    before: (request) => {
      enteredAt.set(request, stateEnteredTime(request.event));
      const schema = typeof definition.input === 'function' ? (definition.input as (event: unknown) => TSchema)(request.event) : definition.input;
      logger.appendKeys({ step });
      const input = parseInput(step, schema, request.event);
      const migration = definition.migration?.(input);
      if (migration) logger.appendKeys({ migration });
      request.event = input;
      logger.info(`${step} started`);
    },
  };

  const secrets: MiddlewareObj<unknown, TResult, Error, Context> = {
    before: async (request) => {
      const arns = (definition.secrets?.(request.event as z.output<TSchema>) ?? []).filter(isSecretsManagerRef);
      fetchedArns.set(request, arns);
      const provider = arns.length > 0 ? await secretsCache.provider(request as Request, arns, fallbackSecrets) : fallbackSecrets;
      (request.context as ToolsContext)[TOOLS] = { secrets: provider, logger, context: request.context };
    },
  };

  const errorNames: MiddlewareObj<unknown, TResult, Error, Context> = {
    onError: (request) => {
      const error: unknown = withinRetryWindow(request.error, enteredAt.get(request), retryWindowMinutes(request.event));
      // The step already read the secret again once; the next invocation must not start from a stale copy either.
      if (isAuthenticationFailure(error)) secretsCache.invalidate(fetchedArns.get(request) ?? []);
      if (!(error instanceof PgferryError)) {
        const message = error instanceof Error ? error.message : String(error);
        request.error = new PgferryError('pgferry.Internal', message, { cause: error });
      } else {
        request.error = error;
      }
      // Name and message only: both are secret-free by contract, a stack or a cause need not be.
      logger.error(`${step} failed`, { error: { name: request.error!.name, message: request.error!.message } });
    },
  };

  const handler = middy<unknown, TResult, Error, Context>()
    .use(injectLambdaContext(logger, { logEvent: false, resetKeys: true }))
    .use(metrics ? [logMetrics(metrics, { captureColdStartMetric: true })] : [])
    .use(validation)
    .use(secrets)
    .use(errorNames)
    .handler(async (event, context) => {
      const tools = (context as ToolsContext)[TOOLS]!;
      const result = await definition.handler(event as z.output<TSchema>, tools);
      logger.info(`${step} finished`);
      return result;
    });
  return handler;
}

/** A state that only needs the normalized spec and both sides' secrets: most of them. */
export function specStepHandler<TResult>(name: string, step: (spec: SpecEvent['spec'], secrets: SecretsProvider) => Promise<TResult>) {
  return lambdaHandler({ name, input: specEvent, secrets: specSecrets, migration: specMigration, handler: ({ spec }, { secrets }) => step(spec, secrets) });
}

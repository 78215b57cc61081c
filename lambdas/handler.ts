/**
 * The one way a Lambda of pgferry is built: a middy handler around an engine function.
 * Errors keep their pgferry name (the ASL's Retry/Catch match on it); anything else
 * becomes `pgferry.Internal` with its message, so Step Functions never sees a stack dump
 * instead of a reason.
 */
import middy from '@middy/core';
import type { Context } from 'aws-lambda';
import { PgferryError } from '../engine/errors.js';

const errorNames = {
  onError: (request: { error: unknown }) => {
    const error = request.error;
    if (error instanceof PgferryError) return;
    const message = error instanceof Error ? error.message : String(error);
    request.error = new PgferryError('pgferry.Internal', message, { cause: error });
  },
};

export function lambdaHandler<TEvent, TResult>(fn: (event: TEvent) => Promise<TResult>) {
  return middy<TEvent, TResult, Error, Context>().use(errorNames).handler((event) => fn(event));
}

/**
 * Errors the workflow can name. `name` becomes the Step Functions error name (Lambda's
 * errorType), so the ASL's Retry/Catch match on it; `message` must be readable by a person
 * and must never contain a secret.
 */
export class PgferryError extends Error {
  constructor(name: string, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = name;
  }
}

/** A failure worth retrying (lost connection, server starting up, too many connections). */
export class TransientError extends PgferryError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('pgferry.Transient', message, options);
  }
}

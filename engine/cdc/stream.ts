/**
 * The streaming side of CDC: a replication connection that runs `START_REPLICATION … LOGICAL`
 * on the slot created by slot.ts and hands every pgoutput message, decoded by pgoutput.ts, to
 * the applier, one at a time and in order.
 *
 * Transport is pg-logical-replication's LogicalReplicationService (CopyBoth handling, XLogData
 * and keepalive framing, pausing the socket while a message is being handled). Everything that
 * decides what the slot may forget is done here instead, because the library gets it wrong for
 * a consumer that commits elsewhere (docs/architecture.md, "Consistency"):
 * - its automatic acknowledgement and its periodic status timer report the last *received* LSN,
 *   so both are turned off (`acknowledge: { auto: false, timeoutSeconds: 0 }`);
 * - it never answers the server's keepalives: we answer them, and send periodic status updates,
 *   with `appliedLsn()` — the LSN the target has committed — and nothing else;
 * - its `acknowledge()` reports LSN + 1 and a timestamp on the wrong epoch, so the standby
 *   status update is built here, reporting exactly the acknowledged LSN;
 * - its pgoutput plugin sends the `messages` option (unknown to PG 13) and parses tuples into
 *   JS values (losing timestamp microseconds), so a plugin of our own starts replication and
 *   hands over the raw XLogData payload, which decodePgoutput decodes.
 */
import { EventEmitter } from 'node:events';
import type pg from 'pg';
import { LogicalReplicationService } from 'pg-logical-replication';
import { quoteIdent, messageOf } from '../sql.js';
import { PgferryError } from '../errors.js';
import { decodePgoutput, formatLsn, parseLsn, type PgoutputMessage } from './pgoutput.js';

export interface StreamOptions {
  slotName: string;
  publicationName: string;
  /**
   * Protocol 2 with `streaming 'on'` (PostgreSQL 14+): the server sends a large transaction in
   * blocks while it is still in progress, instead of all at once after its commit. Default false.
   */
  streaming?: boolean;
  /** Where to start; the server starts at the slot's confirmed_flush_lsn if that is later. Default 0/0. */
  startLsn?: string;
  /** LSN the target holds (committed); the only LSN ever acknowledged */
  appliedLsn: () => string;
  /**
   * Interval of unsolicited status updates (with `appliedLsn()`), which keep the walsender from
   * timing out while a slow handler holds the stream paused. Default 10 s; 0 disables.
   */
  statusIntervalMs?: number;
}

export interface StreamedMessage {
  /**
   * WAL position the server put on the XLogData frame. Reliable only for a commit, where it is
   * the transaction's end LSN (= message.endLsn, the LSN to record and acknowledge); other
   * messages carry the walsender's position at the time (a relation message even 0/0).
   */
  lsn: string;
  message: PgoutputMessage;
  /** Size of the XLogData payload the message was decoded from (flow control's bytes decoded). */
  bytes: number;
}

/** Emitted for every server keepalive; `replied` is the LSN sent back when the server asked. */
export interface KeepaliveEvent {
  serverLsn: string;
  replyRequested: boolean;
  replied?: string;
}

export interface ChangeStream {
  on(event: 'error', listener: (error: Error) => void): this;
  on(event: 'keepalive', listener: (event: KeepaliveEvent) => void): this;
  once(event: 'error', listener: (error: Error) => void): this;
  once(event: 'keepalive', listener: (event: KeepaliveEvent) => void): this;
}

/**
 * Starts pgoutput protocol 1 replication and returns each XLogData payload as a Buffer of its
 * own. Structurally the library's AbstractPlugin, which its index does not export.
 */
class RawPgoutputPlugin {
  constructor(readonly options: { publicationName: string; streaming: boolean }) {}

  get name(): string {
    return 'pgoutput';
  }

  start(client: pg.Client, slotName: string, lastLsn: string): Promise<unknown> {
    // publication_names is a list of identifiers inside a string literal: quote, then escape.
    const publications = quoteIdent(this.options.publicationName).replace(/'/g, "''");
    const protocol = this.options.streaming ? "proto_version '2', streaming 'on'" : "proto_version '1'";
    return client.query(`START_REPLICATION SLOT ${quoteIdent(slotName)} LOGICAL ${lastLsn} (${protocol}, publication_names '${publications}')`);
  }

  parse(buffer: Buffer): Buffer {
    // The chunk is a view into pg-protocol's receive buffer, which later reads overwrite; with
    // flow control the message is handled after further reads, so it must be copied.
    return Buffer.from(buffer);
  }
}

/** Microseconds between the Unix epoch and PostgreSQL's (2000-01-01). */
export const PG_EPOCH_OFFSET_US = 946_684_800_000_000n;

/** Standby status update ('r'): write = flush = apply = `lsn`; with `replyRequested` the server answers with a keepalive at once. */
function standbyStatusUpdate(lsn: bigint, replyRequested = false): Buffer {
  const message = Buffer.alloc(34);
  message.write('r', 0, 'latin1');
  message.writeBigUInt64BE(lsn, 1);
  message.writeBigUInt64BE(lsn, 9);
  message.writeBigUInt64BE(lsn, 17);
  message.writeBigInt64BE(BigInt(Date.now()) * 1000n - PG_EPOCH_OFFSET_US, 25);
  message.writeUInt8(replyRequested ? 1 : 0, 33);
  return message;
}


type Handler = (m: StreamedMessage) => Promise<void> | void;

export class ChangeStream extends EventEmitter {
  private readonly service: LogicalReplicationService;
  private state: 'idle' | 'starting' | 'streaming' | 'stopped' = 'idle';
  /** Highest LSN reported to the server; status updates never go below it. */
  private reported: bigint;
  private timer: NodeJS.Timeout | undefined;

  constructor(
    clientConfig: pg.ClientConfig,
    private readonly options: StreamOptions,
  ) {
    super();
    this.reported = options.startLsn ? parseLsn(options.startLsn) : 0n;
    this.service = new LogicalReplicationService(clientConfig, {
      acknowledge: { auto: false, timeoutSeconds: 0 },
      flowControl: { enabled: true },
    });
  }

  /** Resolves once the server has entered streaming (CopyBoth); rejects if it cannot start. */
  start(onMessage: Handler): Promise<void> {
    if (this.state !== 'idle') return Promise.reject(new Error(`ChangeStream for slot ${this.options.slotName} was already started`));
    this.state = 'starting';
    const { slotName } = this.options;
    const startLsn = formatLsn(this.reported);
    let inStream = false;

    this.service.on('data', async (lsn: string, payload: Buffer) => {
      if (this.state !== 'streaming') return;
      try {
        const message = decodePgoutput(payload, { inStream });
        if (message.tag === 'stream-start') inStream = true;
        else if (message.tag === 'stream-stop') inStream = false;
        await onMessage({ lsn: formatLsn(parseLsn(lsn)), message, bytes: payload.length });
      } catch (error) {
        // No later message may be handed over once one failed: the applier would skip it.
        if (this.state === 'streaming') this.fail(error instanceof Error ? error : new Error(messageOf(error)));
      }
    });
    this.service.on('heartbeat', (lsn: string, _timestamp: number, shouldRespond: boolean) => {
      if (this.state !== 'streaming') return;
      let replied: string | undefined;
      if (shouldRespond) {
        try {
          replied = this.sendStatus();
        } catch (error) {
          this.fail(error instanceof Error ? error : new Error(messageOf(error)));
          return;
        }
      }
      this.emit('keepalive', { serverLsn: lsn, replyRequested: shouldRespond, ...(replied ? { replied } : {}) } satisfies KeepaliveEvent);
    });
    this.service.on('error', (error: Error) => {
      if (this.state === 'streaming') this.fail(this.connectionError(error));
    });

    return new Promise<void>((resolve, reject) => {
      this.service.once('start', () => {
        if (this.state !== 'starting') return;
        this.state = 'streaming';
        const interval = this.options.statusIntervalMs ?? 10_000;
        if (interval > 0) {
          this.timer = setInterval(() => {
            try {
              this.sendStatus();
            } catch (error) {
              this.fail(error instanceof Error ? error : new Error(messageOf(error)));
            }
          }, interval);
          this.timer.unref();
        }
        resolve();
      });
      this.service.subscribe(new RawPgoutputPlugin({ publicationName: this.options.publicationName, streaming: this.options.streaming ?? false }), slotName, startLsn).then(
        () => {
          // START_REPLICATION completed: the server ended the stream on its own.
          if (this.state === 'streaming') this.fail(new PgferryError('pgferry.StreamEnded', `The source ended replication from slot ${slotName} unexpectedly.`));
        },
        (error: unknown) => {
          if (this.state === 'starting') {
            this.state = 'stopped';
            void this.service.destroy().catch(() => undefined);
            reject(new PgferryError('pgferry.StreamFailed', `Cannot start streaming from replication slot ${slotName}: ${messageOf(error)}.`, { cause: error }));
          } else if (this.state === 'streaming') {
            this.fail(this.connectionError(error));
          }
        },
      );
    });
  }

  /**
   * Tells the server the target holds everything up to `lsn` (standby status update with
   * write = flush = apply = lsn); the slot may then discard it. `lsn` must not exceed `appliedLsn()`.
   */
  async acknowledge(lsn: string): Promise<void> {
    const value = parseLsn(lsn);
    const applied = this.options.appliedLsn();
    if (value > parseLsn(applied)) {
      throw new PgferryError('pgferry.AcknowledgeAhead', `Cannot acknowledge ${lsn} on slot ${this.options.slotName}: the target has applied only up to ${applied}.`);
    }
    if (this.state !== 'streaming') {
      throw new PgferryError('pgferry.StreamNotRunning', `Cannot acknowledge ${lsn}: the stream from slot ${this.options.slotName} is not running.`);
    }
    this.send(value);
  }

  /**
   * Whether messages already received are still waiting to be handed over (or one is being
   * handled). Reads the library's private queue, like `send` its connection: tied to 2.5.0.
   */
  hasQueuedMessages(): boolean {
    const service = this.service as unknown as { _messageQueue?: unknown[]; _processing?: boolean };
    return (service._messageQueue?.length ?? 0) > 0 || service._processing === true;
  }

  /** Ends the replication connection (the walsender exits and releases the slot). Idempotent. */
  async stop(): Promise<void> {
    if (this.state === 'stopped') return;
    this.state = 'stopped';
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    await this.service.destroy().catch(() => undefined);
  }

  /** Reports `appliedLsn()` (never below what was reported before); returns the LSN sent. */
  private sendStatus(): string {
    this.send(parseLsn(this.options.appliedLsn()));
    return formatLsn(this.reported);
  }

  /**
   * Reports `appliedLsn()` and asks the server for a keepalive right away: its position tells
   * an idle consumer how far the WAL has been read (used while draining for cutover).
   */
  requestKeepalive(): void {
    if (this.state !== 'streaming') return;
    this.send(parseLsn(this.options.appliedLsn()), true);
  }

  private send(lsn: bigint, replyRequested = false): void {
    if (lsn > this.reported) this.reported = lsn;
    // The library keeps the pg Connection private; it is the only way to write CopyData.
    const connection = (this.service as unknown as { _connection: { sendCopyFromChunk(chunk: Buffer): void } | null })._connection;
    if (!connection || typeof connection.sendCopyFromChunk !== 'function') {
      throw new PgferryError('pgferry.StreamFailed', `Cannot send a status update on slot ${this.options.slotName}: the replication connection is closed.`);
    }
    connection.sendCopyFromChunk(standbyStatusUpdate(this.reported, replyRequested));
  }

  private connectionError(error: unknown): PgferryError {
    return new PgferryError(
      'pgferry.StreamLost',
      `Lost the replication connection streaming from slot ${this.options.slotName}: ${messageOf(error)}. Restart the stream; it resumes from the last acknowledged LSN.`,
      { cause: error },
    );
  }

  /** Stops delivering, closes the connection and reports `error` once (unhandled if nobody listens, as Node does). */
  private fail(error: Error): void {
    if (this.state === 'stopped') return;
    void this.stop();
    this.emit('error', error);
  }
}

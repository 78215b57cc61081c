/**
 * The streaming side of CDC: a replication connection that runs `START_REPLICATION … LOGICAL`
 * on the slot created by slot.ts, decodes every pgoutput message (pgoutput.ts) as it arrives,
 * and hands them to the applier in order, in batches of what has arrived meanwhile.
 *
 * The transport is a pg.Client with `replication: 'database'`: after START_REPLICATION its
 * connection emits each CopyData frame (XLogData 'w', primary keepalive 'k'), and status
 * updates go back as CopyData. Doing it here (pg-logical-replication did it before) is what keeps the
 * path lean (issue 19: a message is decoded straight from the frame, no copy, no per-message
 * promise or event) and what decides what the slot may forget (docs/architecture.md,
 * "Consistency"):
 * - keepalives are answered, and periodic status updates sent, with `appliedLsn()` — the LSN
 *   the target has committed — and nothing else (never the last *received* LSN);
 * - the standby status update reports exactly the acknowledged LSN, on PostgreSQL's epoch;
 * - values stay the server's text (no type parsing), and START_REPLICATION sends only the
 *   options PostgreSQL 13 knows.
 * While a batch is being applied, frames keep arriving and are decoded; past HIGH_WATER_BYTES
 * waiting, the socket is paused, so the server waits instead of this process's memory.
 */
import { EventEmitter } from 'node:events';
import pg from 'pg';
import { quoteIdent, messageOf } from '../sql.js';
import { PgferryError } from '../errors.js';
import { decodePgoutput, formatLsn, formatLsnParts, parseLsn, type PgoutputMessage } from './pgoutput.js';

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
  readonly lsn: string;
  readonly message: PgoutputMessage;
  /** Size of the XLogData payload the message was decoded from (flow control's bytes decoded). */
  readonly bytes: number;
}

/** A received message; its frame's LSN is formatted only if asked for (rarely: the stream's path never does). */
class Received implements StreamedMessage {
  constructor(
    private readonly high: number,
    private readonly low: number,
    readonly message: PgoutputMessage,
    readonly bytes: number,
  ) {}

  get lsn(): string {
    return formatLsnParts(this.high, this.low);
  }
}

/**
 * Payload bytes waiting to be handed over above which the socket is paused: enough to go on
 * decoding while the target commits a batch, little enough to bound memory (decoded, a few times this).
 */
const HIGH_WATER_BYTES = 8 * 1024 * 1024;

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


/** Takes the messages received since the last call, in stream order; the next batch waits for it. */
type Handler = (batch: StreamedMessage[]) => Promise<void> | void;

/** The START_REPLICATION command: protocol 1, or 2 with streaming of transactions in progress. */
function startReplicationSql(slotName: string, startLsn: string, publicationName: string, streaming: boolean): string {
  // publication_names is a list of identifiers inside a string literal: quote, then escape.
  const publications = quoteIdent(publicationName).replace(/'/g, "''");
  const protocol = streaming ? "proto_version '2', streaming 'on'" : "proto_version '1'";
  return `START_REPLICATION SLOT ${quoteIdent(slotName)} LOGICAL ${startLsn} (${protocol}, publication_names '${publications}')`;
}

/** The parts of pg's Connection the stream uses (not in pg's types). */
interface ReplicationConnection extends EventEmitter {
  stream: { pause(): void; resume(): void };
  sendCopyFromChunk(chunk: Buffer): void;
}

export class ChangeStream extends EventEmitter {
  private client: pg.Client | undefined;
  private state: 'idle' | 'starting' | 'streaming' | 'stopped' = 'idle';
  /** Highest LSN reported to the server; status updates never go below it. */
  private reported: bigint;
  private timer: NodeJS.Timeout | undefined;
  /** Decoded and not handed over yet. */
  private queue: StreamedMessage[] = [];
  /** A frame that could not be decoded: the stream fails once the messages before it are handed over, and takes no more. */
  private undecodable: Error | undefined;
  private queuedBytes = 0;
  private delivering = false;
  private paused = false;
  /** Between a Stream Start and a Stream Stop: data messages lead with an xid. */
  private inStream = false;

  constructor(
    private readonly config: pg.ClientConfig,
    private readonly options: StreamOptions,
  ) {
    super();
    this.reported = options.startLsn ? parseLsn(options.startLsn) : 0n;
  }

  /** Resolves once the server has entered streaming (CopyBoth); rejects if it cannot start. */
  start(onMessages: Handler): Promise<void> {
    if (this.state !== 'idle') return Promise.reject(new Error(`ChangeStream for slot ${this.options.slotName} was already started`));
    this.state = 'starting';
    const { slotName } = this.options;
    const client = (this.client = new pg.Client({ ...this.config, replication: 'database' } as pg.ClientConfig));
    client.on('error', (error: Error) => {
      if (this.state === 'streaming') this.fail(this.connectionError(error));
    });
    return new Promise<void>((resolve, reject) => {
      const refuse = (error: unknown) => {
        if (this.state !== 'starting') return;
        this.state = 'stopped';
        void client.end().catch(() => undefined);
        reject(new PgferryError('pgferry.StreamFailed', `Cannot start streaming from replication slot ${slotName}: ${messageOf(error)}.`, { cause: error }));
      };
      client.connect().then(() => {
        if (this.state !== 'starting') return;
        const connection = (client as unknown as { connection: ReplicationConnection }).connection;
        connection.once('replicationStart', () => {
          if (this.state !== 'starting') return;
          this.state = 'streaming';
          this.startStatusTimer();
          resolve();
        });
        connection.on('copyData', ({ chunk }: { chunk: Buffer }) => this.receive(chunk, onMessages));
        const sql = startReplicationSql(slotName, formatLsn(this.reported), this.options.publicationName, this.options.streaming ?? false);
        client.query(sql).then(
          () => {
            // START_REPLICATION completed: the server ended the stream on its own.
            if (this.state === 'streaming') this.fail(new PgferryError('pgferry.StreamEnded', `The source ended replication from slot ${slotName} unexpectedly.`));
          },
          (error: unknown) => {
            if (this.state === 'starting') refuse(error);
            else if (this.state === 'streaming') this.fail(this.connectionError(error));
          },
        );
      }, refuse);
    });
  }

  /** One CopyData frame: XLogData is decoded and queued; a keepalive is answered when the server asks. */
  private receive(frame: Buffer, onMessages: Handler): void {
    if (this.state !== 'streaming' || this.undecodable) return;
    const kind = frame[0];
    if (kind === 0x77) {
      // XLogData: 'w', start LSN, end of WAL, send time (8 bytes each), then the pgoutput message.
      const payload = frame.subarray(25);
      try {
        const message = decodePgoutput(payload, { inStream: this.inStream });
        if (message.tag === 'stream-start') this.inStream = true;
        else if (message.tag === 'stream-stop') this.inStream = false;
        this.queue.push(new Received(frame.readUInt32BE(1), frame.readUInt32BE(5), message, payload.length));
      } catch (error) {
        this.undecodable = error as Error;
      }
      this.queuedBytes += payload.length;
      if (!this.paused && this.queuedBytes >= HIGH_WATER_BYTES) {
        this.paused = true;
        this.connection()?.stream.pause();
      }
      if (!this.delivering) void this.deliver(onMessages);
    } else if (kind === 0x6b) {
      // Primary keepalive: 'k', end of WAL, send time, reply requested.
      const serverLsn = formatLsnParts(frame.readUInt32BE(1), frame.readUInt32BE(5));
      const replyRequested = frame[17] === 1;
      let replied: string | undefined;
      if (replyRequested) {
        try {
          replied = this.sendStatus();
        } catch (error) {
          this.fail(error);
          return;
        }
      }
      this.emit('keepalive', { serverLsn, replyRequested, ...(replied ? { replied } : {}) } satisfies KeepaliveEvent);
    }
  }

  /** Hands the queue over, batch by batch, until it is empty; then a frame that failed to decode fails the stream. */
  private async deliver(onMessages: Handler): Promise<void> {
    this.delivering = true;
    try {
      while (this.state === 'streaming' && this.queue.length > 0) {
        const taken = this.queue;
        this.queue = [];
        this.queuedBytes = 0;
        if (this.paused) {
          this.paused = false;
          this.connection()?.stream.resume();
        }
        const handled = onMessages(taken);
        if (handled) await handled;
      }
      if (this.undecodable) throw this.undecodable;
    } catch (error) {
      // No later message may be handed over once one failed: the applier would skip it.
      if (this.state === 'streaming') this.fail(error);
    } finally {
      this.delivering = false;
    }
  }

  private startStatusTimer(): void {
    const interval = this.options.statusIntervalMs ?? 10_000;
    if (interval <= 0) return;
    this.timer = setInterval(() => {
      try {
        this.sendStatus();
      } catch (error) {
        this.fail(error);
      }
    }, interval);
    this.timer.unref();
  }

  private connection(): ReplicationConnection | undefined {
    return (this.client as unknown as { connection?: ReplicationConnection } | undefined)?.connection;
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

  /** Whether messages already received are still waiting to be handed over (or a batch is being handled). */
  hasQueuedMessages(): boolean {
    return this.queue.length > 0 || this.delivering;
  }

  /** Ends the replication connection (the walsender exits and releases the slot). Idempotent. */
  async stop(): Promise<void> {
    if (this.state === 'stopped') return;
    this.state = 'stopped';
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    this.queue = [];
    this.queuedBytes = 0;
    if (this.paused) this.connection()?.stream.resume();
    await this.client?.end().catch(() => undefined);
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
    const connection = this.state === 'streaming' ? this.connection() : undefined;
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
  private fail(error: unknown): void {
    if (this.state === 'stopped') return;
    void this.stop();
    this.emit('error', error instanceof Error ? error : new Error(messageOf(error)));
  }
}

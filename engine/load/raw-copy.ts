/**
 * COPY source → target without re-framing every row. PostgreSQL sends one CopyData message per
 * row; pg-copy-streams strips each header on the way out and adds new ones on the way in,
 * which costs the Node process about half a core per stream on tables of small rows. A
 * frontend sends COPY data to the server as CopyData messages of exactly the same format, so
 * the source's frames can be passed on as they arrive: the reader below only walks message
 * headers to find where the copy ends, and the writer sends the frames unchanged.
 *
 * The reader takes over the connection's socket for the duration of the COPY, as
 * pg-copy-streams' `to` does, and hands everything after the copy (CommandComplete,
 * ReadyForQuery, or an ErrorResponse) back to `pg`.
 */
import { Readable } from 'node:stream';
import { from as copyFrom, type CopyStreamQuery } from 'pg-copy-streams';

const CopyData = 0x64; // d
const ErrorResponse = 0x45; // E
/** Messages the server may intersperse with CopyData; they are skipped, never forwarded. */
const ASYNC_MESSAGES = new Set([0x48 /* H CopyOutResponse */, 0x53 /* S ParameterStatus */, 0x4e /* N Notice */, 0x41 /* A Notification */]);

interface PgConnection {
  stream: NodeJS.EventEmitter & { read(): Buffer | null; pause(): unknown; resume(): unknown };
  query(text: string): void;
}

export class RawCopyOut extends Readable {
  /** Bytes of row data, without the frames' headers. */
  payloadBytes = 0;
  rowCount = 0;
  private connection?: PgConnection;
  private pgDataHandler?: (chunk: Buffer) => void;
  private readonly onReadable = () => this.forward();
  private drained = false;
  private forwarding = false;
  private finished = false;
  // Parser state, carried across socket chunks.
  private readonly header = Buffer.alloc(5);
  private headerLength = 0;
  private bodyRemaining = 0;
  private code = 0;

  constructor(private readonly text: string) {
    super();
  }

  /** Called by `pg` when the query is sent. */
  submit(connection: PgConnection): void {
    this.connection = connection;
    const stream = connection.stream;
    const [handler] = stream.listeners('data') as ((chunk: Buffer) => void)[];
    this.pgDataHandler = handler;
    stream.removeListener('data', handler!);
    stream.pause();
    stream.on('readable', this.onReadable);
    connection.query(this.text);
  }

  override _read(): void {
    this.drained = true;
    this.forward();
  }

  private forward(): void {
    if (this.forwarding || !this.drained || !this.connection || this.finished) return;
    this.forwarding = true;
    let chunk: Buffer | null;
    while (this.drained && !this.finished && (chunk = this.connection.stream.read()) !== null) this.parse(chunk);
    this.forwarding = false;
  }

  private parse(chunk: Buffer): void {
    const frames: Buffer[] = [];
    let regionStart = -1;
    const closeRegion = (end: number) => {
      if (regionStart >= 0 && end > regionStart) frames.push(chunk.subarray(regionStart, end));
      regionStart = -1;
    };
    const end = chunk.length;
    let pos = 0;
    while (pos < end) {
      if (this.bodyRemaining > 0) {
        const n = Math.min(this.bodyRemaining, end - pos);
        if (this.code === CopyData) {
          if (regionStart < 0) regionStart = pos;
          this.payloadBytes += n;
        }
        pos += n;
        this.bodyRemaining -= n;
        if (this.bodyRemaining === 0 && this.messageEnds(chunk, pos, closeRegion, frames)) return;
        continue;
      }
      if (this.headerLength === 0) {
        // The common case, one row after another: whole CopyData headers within this chunk.
        while (pos + 5 <= end && chunk[pos] === CopyData) {
          if (regionStart < 0) regionStart = pos;
          this.rowCount++;
          const bodyLength = chunk.readUInt32BE(pos + 1) - 4;
          const bodyEnd = pos + 5 + bodyLength;
          if (bodyEnd > end) {
            this.code = CopyData;
            this.payloadBytes += end - pos - 5;
            this.bodyRemaining = bodyEnd - end;
            pos = end;
            break;
          }
          this.payloadBytes += bodyLength;
          pos = bodyEnd;
        }
        if (pos >= end) break;
        this.code = chunk[pos]!;
        if (this.code === ErrorResponse) {
          // pg reads the error and calls handleError: the stream must fail, never end as if complete.
          closeRegion(pos);
          return this.handBack(frames, chunk.subarray(pos));
        }
      }
      // A header split across chunks, or a message other than CopyData.
      if (this.code === CopyData) {
        if (regionStart < 0) regionStart = pos;
      } else closeRegion(pos);
      const n = Math.min(5 - this.headerLength, end - pos);
      chunk.copy(this.header, this.headerLength, pos, pos + n);
      this.headerLength += n;
      pos += n;
      if (this.headerLength < 5) continue;
      this.headerLength = 0;
      this.bodyRemaining = this.header.readUInt32BE(1) - 4;
      if (this.code === CopyData) this.rowCount++;
      if (this.bodyRemaining === 0 && this.messageEnds(chunk, pos, closeRegion, frames)) return;
    }
    closeRegion(end);
    this.pushFrames(frames);
  }

  /** After a whole message: true when it ended the copy (CopyDone, or anything unexpected, as libpq treats it). */
  private messageEnds(chunk: Buffer, pos: number, closeRegion: (end: number) => void, frames: Buffer[]): boolean {
    if (this.code === CopyData || ASYNC_MESSAGES.has(this.code)) return false;
    closeRegion(pos);
    this.handBack(frames, chunk.subarray(pos));
    this.push(null);
    return true;
  }

  private pushFrames(frames: Buffer[]): void {
    if (frames.length === 0) return;
    this.drained = this.push(frames.length === 1 ? frames[0] : Buffer.concat(frames));
  }

  /** Gives the socket back to `pg` with whatever followed the copy. */
  private handBack(frames: Buffer[], rest: Buffer): void {
    this.pushFrames(frames);
    this.finished = true;
    const stream = this.connection!.stream;
    stream.removeListener('readable', this.onReadable);
    stream.on('data', this.pgDataHandler!);
    if (rest.length > 0) this.pgDataHandler!(rest);
    process.nextTick(() => stream.resume());
  }

  handleError(error: Error): void {
    this.destroy(error);
  }

  handleCommandComplete(): void {}

  handleReadyForQuery(): void {}
}

/** A COPY FROM STDIN whose input chunks are already CopyData frames (from RawCopyOut). */
export function rawCopyIn(text: string): CopyStreamQuery {
  const stream = copyFrom(text) as CopyStreamQuery & { connection: { stream: NodeJS.WritableStream }; flushChunk(chunk: Buffer): boolean };
  stream.flushChunk = (chunk: Buffer) => stream.connection.stream.write(chunk);
  return stream;
}

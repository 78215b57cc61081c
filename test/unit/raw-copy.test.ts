import { EventEmitter } from 'node:events';
import { describe, expect, it } from 'vitest';
import { RawCopyOut } from '../../engine/load/raw-copy.js';

/** A protocol message: type byte, length (itself included), body. */
const message = (type: string, body: Buffer) => {
  const header = Buffer.alloc(5);
  header.write(type, 0, 'latin1');
  header.writeUInt32BE(body.length + 4, 1);
  return Buffer.concat([header, body]);
};

/** What `pg` hands the reader: a socket-like stream, fed the server's bytes in the given pieces. */
class FakeConnection {
  readonly stream = Object.assign(new EventEmitter(), {
    pieces: [] as Buffer[],
    read: (): Buffer | null => this.stream.pieces.shift() ?? null,
    pause: () => undefined,
    // Resumed, the socket flows what is left as 'data' events (to pg's handler, once handed back).
    resume: () => {
      for (let piece = this.stream.pieces.shift(); piece; piece = this.stream.pieces.shift()) this.stream.emit('data', piece);
    },
  });
  readonly handedBack: Buffer[] = [];
  sent?: string;

  constructor() {
    this.stream.on('data', (chunk: Buffer) => this.handedBack.push(chunk));
  }

  query(text: string) {
    this.sent = text;
  }

  deliver(pieces: Buffer[]) {
    this.stream.pieces.push(...pieces);
    this.stream.emit('readable');
  }
}

async function readAll(reader: RawCopyOut): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of reader) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

/** Splits `bytes` at the given offsets. */
const splitAt = (bytes: Buffer, offsets: number[]) =>
  [0, ...offsets, bytes.length].slice(1).map((end, i, ends) => bytes.subarray(i === 0 ? 0 : ends[i - 1], end)).filter((b) => b.length > 0);

describe('RawCopyOut', () => {
  // Rows of several sizes, one empty; what follows the copy belongs to pg again.
  const rows = [Buffer.from('first row'), Buffer.alloc(0), Buffer.alloc(300, 7), Buffer.from('x'), Buffer.alloc(70_000, 1)];
  const frames = Buffer.concat(rows.map((row) => message('d', row)));
  const after = Buffer.concat([message('C', Buffer.from('COPY 5\0')), message('Z', Buffer.from('I'))]);
  const server = Buffer.concat([message('H', Buffer.from([1, 0, 0])), frames, message('c', Buffer.alloc(0)), after]);

  it('passes the CopyData frames on unchanged, wherever the socket splits them, and hands back what follows', async () => {
    const cuts = [
      [],
      Array.from({ length: 600 }, (_, i) => i + 1), // one byte at a time, through the small rows into the large one
      Array.from({ length: 40 }, (_, i) => server.length - 40 + i), // and through the copy's end
      [3, 9, 10, 11, 12, 13, 25, 400, 401, 70_000],
      [server.length - after.length - 2],
    ];
    for (const offsets of cuts) {
      const connection = new FakeConnection();
      const reader = new RawCopyOut('COPY t TO STDOUT (FORMAT binary)');
      reader.submit(connection as never);
      const output = readAll(reader);
      connection.deliver(splitAt(server, offsets));
      expect((await output).equals(frames)).toBe(true);
      await new Promise(setImmediate);
      expect(reader.rowCount).toBe(rows.length);
      expect(reader.payloadBytes).toBe(rows.reduce((n, row) => n + row.length, 0));
      expect(Buffer.concat(connection.handedBack).equals(after)).toBe(true);
      expect(connection.sent).toBe('COPY t TO STDOUT (FORMAT binary)');
    }
  });

  it('fails on an ErrorResponse in the middle of the rows, and hands the error to pg', async () => {
    const error = message('E', Buffer.from('SERROR\0C57014\0Mcanceling statement\0\0'));
    const connection = new FakeConnection();
    const reader = new RawCopyOut('COPY t TO STDOUT');
    reader.submit(connection as never);
    const chunks: Buffer[] = [];
    reader.on('data', (chunk: Buffer) => chunks.push(chunk));
    connection.deliver(splitAt(Buffer.concat([message('d', Buffer.from('one')), message('d', Buffer.from('two')), error, after]), [6, 11]));
    await new Promise(setImmediate);
    expect(Buffer.concat(chunks).equals(Buffer.concat([message('d', Buffer.from('one')), message('d', Buffer.from('two'))]))).toBe(true);
    expect(Buffer.concat(connection.handedBack).equals(Buffer.concat([error, after]))).toBe(true);
    reader.handleError(new Error('canceling statement'));
    await expect(readAll(reader)).rejects.toThrow('canceling statement');
  });
});

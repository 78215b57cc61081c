/**
 * Decoder for PostgreSQL's logical replication protocol as produced by the built-in
 * `pgoutput` plugin, protocol versions 1 and 2 (streaming of large in-progress transactions;
 * no two-phase).
 *
 * One call decodes one message: the payload of an XLogData frame, or the `data` column of a
 * row from `pg_logical_slot_get_binary_changes` / `pg_logical_slot_peek_binary_changes`.
 * Column values are kept exactly as the server sent them (text output form, or the raw bytes
 * of the rare binary form); nothing is parsed into JS numbers or Dates.
 *
 * Layouts: PostgreSQL docs, "Logical Replication Message Formats".
 */

/** A column whose value is an unchanged TOAST value the server did not send ('u'). */
export const UNCHANGED_TOAST: unique symbol = Symbol('unchanged-toast');

/**
 * One column of a tuple: its text output form, NULL, an unchanged TOAST value not sent, or (only
 * with the binary option, which pgferry never asks for) the raw bytes. Plain values, not
 * objects: a change's tuple is the applier's buffered row as it is.
 */
export type TupleValue = string | null | typeof UNCHANGED_TOAST | Buffer;

export interface RelationMessage {
  tag: 'relation';
  xid?: number;
  relationId: number;
  /** Namespace name; pgoutput sends '' for pg_catalog. */
  schema: string;
  name: string;
  replicaIdentity: 'default' | 'nothing' | 'full' | 'index';
  columns: { name: string; typeOid: number; typeMod: number; partOfKey: boolean }[];
}

/**
 * Inside a stream block (protocol 2, between Stream Start and Stream Stop) data messages carry
 * `xid`: the (sub)transaction that made the change.
 */
export type PgoutputMessage =
  | { tag: 'begin'; finalLsn: string; commitTime: bigint /* microseconds since 2000-01-01 */; xid: number }
  | { tag: 'stream-start'; xid: number; firstSegment: boolean }
  | { tag: 'stream-stop' }
  | { tag: 'stream-commit'; xid: number; flags: number; commitLsn: string; endLsn: string; commitTime: bigint }
  | { tag: 'stream-abort'; xid: number; subxid: number }
  | { tag: 'commit'; flags: number; commitLsn: string; endLsn: string; commitTime: bigint }
  | RelationMessage
  | { tag: 'type'; xid?: number; typeOid: number; schema: string; name: string }
  | { tag: 'origin'; originLsn: string; name: string }
  | { tag: 'insert'; xid?: number; relationId: number; newTuple: TupleValue[] }
  | { tag: 'update'; xid?: number; relationId: number; oldKey?: TupleValue[]; oldTuple?: TupleValue[]; newTuple: TupleValue[] }
  | { tag: 'delete'; xid?: number; relationId: number; oldKey?: TupleValue[]; oldTuple?: TupleValue[] }
  | { tag: 'truncate'; xid?: number; cascade: boolean; restartIdentity: boolean; relationIds: number[] }
  | { tag: 'message'; xid?: number; transactional: boolean; lsn: string; prefix: string; content: Buffer };

const UINT32 = 0xffffffffn;

/** Formats a 64-bit LSN the way PostgreSQL's `pg_lsn` output does: `%X/%X`, upper-case hex, no padding. */
export function formatLsn(value: bigint): string {
  if (value < 0n || value > 0xffffffffffffffffn) throw new RangeError(`LSN out of range: ${value}`);
  return formatLsnParts(Number(value >> 32n), Number(value & UINT32));
}

/** formatLsn of the LSN whose high and low 32 bits are given (as the wire carries them): no BigInt on the stream's path. */
export const formatLsnParts = (high: number, low: number): string => `${high.toString(16).toUpperCase()}/${low.toString(16).toUpperCase()}`;

const LSN_PATTERN = /^([0-9A-Fa-f]{1,8})\/([0-9A-Fa-f]{1,8})$/;

/** Parses `pg_lsn` text (`16/B374D848`, either case, optional zero padding) into a 64-bit value. */
export function parseLsn(text: string): bigint {
  const match = LSN_PATTERN.exec(text);
  if (!match) throw new Error(`invalid LSN ${JSON.stringify(text)}: expected two hexadecimal numbers separated by "/"`);
  return (BigInt(Number.parseInt(match[1]!, 16)) << 32n) | BigInt(Number.parseInt(match[2]!, 16));
}

const utf8 = new TextDecoder('utf-8', { fatal: true });

const tagName = (byte: number): string => {
  const ch = String.fromCharCode(byte);
  return byte >= 0x20 && byte < 0x7f ? `'${ch}' (0x${byte.toString(16).padStart(2, '0')})` : `0x${byte.toString(16).padStart(2, '0')}`;
};

class Reader {
  private offset = 0;
  constructor(
    private readonly buffer: Buffer,
    private readonly tag: number,
  ) {}

  /** The message named in errors (built only for one). */
  get context(): string {
    return `'${String.fromCharCode(this.tag)}'`;
  }

  private need(bytes: number, what: string): void {
    if (this.offset + bytes > this.buffer.length) {
      throw new Error(
        `pgoutput ${this.context} message truncated: needed ${bytes} byte(s) for ${what} at offset ${this.offset}, message is ${this.buffer.length} byte(s)`,
      );
    }
  }

  uint8(what: string): number {
    this.need(1, what);
    return this.buffer.readUInt8(this.offset++);
  }

  int16(what: string): number {
    this.need(2, what);
    const value = this.buffer.readInt16BE(this.offset);
    this.offset += 2;
    return value;
  }

  int32(what: string): number {
    this.need(4, what);
    const value = this.buffer.readInt32BE(this.offset);
    this.offset += 4;
    return value;
  }

  uint32(what: string): number {
    this.need(4, what);
    const value = this.buffer.readUInt32BE(this.offset);
    this.offset += 4;
    return value;
  }

  int64(what: string): bigint {
    this.need(8, what);
    const value = this.buffer.readBigInt64BE(this.offset);
    this.offset += 8;
    return value;
  }

  lsn(what: string): string {
    this.need(8, what);
    const value = formatLsnParts(this.buffer.readUInt32BE(this.offset), this.buffer.readUInt32BE(this.offset + 4));
    this.offset += 8;
    return value;
  }

  bytes(length: number, what: string): Buffer {
    if (length < 0) throw new Error(`pgoutput ${this.context} message malformed: negative length ${length} for ${what}`);
    this.need(length, what);
    const value = this.buffer.subarray(this.offset, this.offset + length);
    this.offset += length;
    return value;
  }

  /** UTF-8 text of `end - start` bytes from `start`; `what` names it in an error. */
  text(start: number, end: number, what: () => string): string {
    // Buffer#toString is several times faster than TextDecoder but replaces invalid bytes with
    // U+FFFD silently; only then (or for a real U+FFFD) does the strict decoder decide.
    const fast = this.buffer.toString('utf8', start, end);
    if (!fast.includes('\uFFFD')) return fast;
    try {
      return utf8.decode(this.buffer.subarray(start, end));
    } catch {
      throw new Error(`pgoutput ${this.context} message malformed: ${what()} is not valid UTF-8`);
    }
  }

  /** A NUL-terminated UTF-8 string. */
  string(what: string): string {
    const end = this.buffer.indexOf(0, this.offset);
    if (end < 0) {
      throw new Error(`pgoutput ${this.context} message truncated: ${what} at offset ${this.offset} has no NUL terminator`);
    }
    const value = this.text(this.offset, end, () => what);
    this.offset = end + 1;
    return value;
  }

  /**
   * A TupleData: the hottest loop of the stream (every column of every change), so it reads the
   * buffer directly and builds an error's wording only when there is an error.
   */
  tuple(what: string): TupleValue[] {
    if (this.offset + 2 > this.buffer.length) this.need(2, `${what} column count`);
    const count = this.buffer.readInt16BE(this.offset);
    this.offset += 2;
    if (count < 0) throw new Error(`pgoutput ${this.context} message malformed: negative column count ${count} in ${what}`);
    const { buffer } = this;
    const values = new Array<TupleValue>(count);
    for (let i = 0; i < count; i++) {
      if (this.offset >= buffer.length) this.need(1, `${what} column ${i + 1} kind`);
      const kind = buffer[this.offset++]!;
      switch (kind) {
        case 0x6e: // 'n'
          values[i] = null;
          break;
        case 0x75: // 'u'
          values[i] = UNCHANGED_TOAST;
          break;
        case 0x74: // 't'
        case 0x62: {
          // 'b'
          if (this.offset + 4 > buffer.length) this.need(4, `${what} column ${i + 1} length`);
          const length = buffer.readInt32BE(this.offset);
          this.offset += 4;
          if (length < 0 || this.offset + length > buffer.length) this.bytes(length, `${what} column ${i + 1} value`);
          const start = this.offset;
          this.offset += length;
          values[i] = kind === 0x74 ? this.text(start, this.offset, () => `${what} column ${i + 1}`) : Buffer.from(buffer.subarray(start, this.offset));
          break;
        }
        default:
          throw new Error(`pgoutput ${this.context} message malformed: unknown tuple column kind ${tagName(kind)} in ${what} column ${i + 1}`);
      }
    }
    return values;
  }

  expect(byte: number, what: string): void {
    const got = this.uint8(what);
    if (got !== byte) {
      throw new Error(`pgoutput ${this.context} message malformed: expected ${tagName(byte)} for ${what}, got ${tagName(got)}`);
    }
  }

  end(): void {
    if (this.offset !== this.buffer.length) {
      throw new Error(
        `pgoutput ${this.context} message malformed: ${this.buffer.length - this.offset} unexpected trailing byte(s) at offset ${this.offset}`,
      );
    }
  }
}

const REPLICA_IDENTITY: Record<string, RelationMessage['replicaIdentity']> = {
  d: 'default',
  n: 'nothing',
  f: 'full',
  i: 'index',
};

/** Tags that exist only in later protocol versions; named so the error says why. */
const LATER_PROTOCOL_TAGS: Record<string, string> = {
  b: 'Begin Prepare (protocol 3+)',
  P: 'Prepare (protocol 3+)',
  K: 'Commit Prepared (protocol 3+)',
  r: 'Rollback Prepared (protocol 3+)',
  p: 'Stream Prepare (protocol 3+)',
};

/** The fields Commit and Stream Commit share, in wire order. */
const commitFields = (r: Reader) => ({
  flags: r.uint8('flags'),
  commitLsn: r.lsn('commit LSN'),
  endLsn: r.lsn('end LSN'),
  commitTime: r.int64('commit timestamp'),
});

/** Data messages that carry an xid inside a stream block. */
const STREAMED_DATA_TAGS = new Set(['R', 'Y', 'I', 'U', 'D', 'T', 'M']);

function decodeRelation(r: Reader): RelationMessage {
  const relationId = r.uint32('relation OID');
  const schema = r.string('namespace');
  const name = r.string('relation name');
  const identityByte = r.uint8('replica identity');
  const replicaIdentity = REPLICA_IDENTITY[String.fromCharCode(identityByte)];
  if (replicaIdentity === undefined) {
    throw new Error(`pgoutput ${r.context} message malformed: unknown replica identity ${tagName(identityByte)} for ${schema}.${name}`);
  }
  const count = r.int16('column count');
  if (count < 0) throw new Error(`pgoutput ${r.context} message malformed: negative column count ${count}`);
  const columns: RelationMessage['columns'] = [];
  for (let i = 0; i < count; i++) {
    const flags = r.uint8(`column ${i + 1} flags`);
    columns.push({
      partOfKey: (flags & 1) !== 0,
      name: r.string(`column ${i + 1} name`),
      typeOid: r.uint32(`column ${i + 1} type OID`),
      typeMod: r.int32(`column ${i + 1} type modifier`),
    });
  }
  return { tag: 'relation', relationId, schema, name, replicaIdentity, columns };
}

function decodeUpdate(r: Reader): PgoutputMessage {
  const relationId = r.uint32('relation OID');
  const update: Extract<PgoutputMessage, { tag: 'update' }> = { tag: 'update', relationId, newTuple: [] };
  let marker = r.uint8('tuple marker');
  if (marker === 0x4b) {
    update.oldKey = r.tuple('old key');
    marker = r.uint8('new tuple marker');
  } else if (marker === 0x4f) {
    update.oldTuple = r.tuple('old tuple');
    marker = r.uint8('new tuple marker');
  }
  if (marker !== 0x4e) {
    throw new Error(`pgoutput ${r.context} message malformed: expected 'K', 'O' or 'N' tuple marker, got ${tagName(marker)}`);
  }
  update.newTuple = r.tuple('new tuple');
  return update;
}

function decodeDelete(r: Reader): PgoutputMessage {
  const relationId = r.uint32('relation OID');
  const marker = r.uint8('old tuple marker');
  if (marker === 0x4b) return { tag: 'delete', relationId, oldKey: r.tuple('old key') };
  if (marker === 0x4f) return { tag: 'delete', relationId, oldTuple: r.tuple('old tuple') };
  throw new Error(`pgoutput ${r.context} message malformed: expected 'K' or 'O' tuple marker, got ${tagName(marker)}`);
}

function decodeTruncate(r: Reader): PgoutputMessage {
  const count = r.int32('relation count');
  if (count < 0) throw new Error(`pgoutput ${r.context} message malformed: negative relation count ${count}`);
  const options = r.uint8('options');
  const relationIds: number[] = [];
  for (let i = 0; i < count; i++) relationIds.push(r.uint32(`relation ${i + 1} OID`));
  return { tag: 'truncate', cascade: (options & 1) !== 0, restartIdentity: (options & 2) !== 0, relationIds };
}

function decodeLogicalMessage(r: Reader): PgoutputMessage {
  const flags = r.uint8('flags');
  const lsn = r.lsn('message LSN');
  const prefix = r.string('prefix');
  const length = r.int32('content length');
  return { tag: 'message', transactional: (flags & 1) !== 0, lsn, prefix, content: Buffer.from(r.bytes(length, 'content')) };
}

/**
 * Decodes one pgoutput (protocol 1 or 2) message. `inStream`: the message arrived between a
 * Stream Start and a Stream Stop, so data messages lead with an xid. Throws a descriptive Error
 * on anything malformed or unsupported.
 */
export function decodePgoutput(buffer: Buffer, { inStream = false }: { inStream?: boolean } = {}): PgoutputMessage {
  if (buffer.length === 0) throw new Error('pgoutput message is empty: no tag byte');
  const tag = buffer[0]!;
  const letter = String.fromCharCode(tag);
  const unsupported = LATER_PROTOCOL_TAGS[letter];
  if (unsupported !== undefined) {
    throw new Error(`unsupported pgoutput message tag ${tagName(tag)}: ${unsupported} is not part of protocol versions 1 and 2`);
  }
  const r = new Reader(buffer, tag);
  r.uint8('tag');
  const xid = inStream && STREAMED_DATA_TAGS.has(letter) ? r.uint32('xid') : undefined;
  let message: PgoutputMessage;
  switch (letter) {
    case 'S':
      message = { tag: 'stream-start', xid: r.uint32('xid'), firstSegment: r.uint8('first segment') === 1 };
      break;
    case 'E':
      message = { tag: 'stream-stop' };
      break;
    case 'c':
      message = { tag: 'stream-commit', xid: r.uint32('xid'), ...commitFields(r) };
      break;
    case 'A':
      message = { tag: 'stream-abort', xid: r.uint32('xid'), subxid: r.uint32('subtransaction xid') };
      break;
    case 'B':
      message = {
        tag: 'begin',
        finalLsn: r.lsn('final LSN'),
        commitTime: r.int64('commit timestamp'),
        xid: r.uint32('xid'),
      };
      break;
    case 'C':
      message = { tag: 'commit', ...commitFields(r) };
      break;
    case 'O':
      message = { tag: 'origin', originLsn: r.lsn('origin LSN'), name: r.string('origin name') };
      break;
    case 'R':
      message = decodeRelation(r);
      break;
    case 'Y':
      message = { tag: 'type', typeOid: r.uint32('type OID'), schema: r.string('namespace'), name: r.string('type name') };
      break;
    case 'I': {
      const relationId = r.uint32('relation OID');
      r.expect(0x4e, 'new tuple marker');
      message = { tag: 'insert', relationId, newTuple: r.tuple('new tuple') };
      break;
    }
    case 'U':
      message = decodeUpdate(r);
      break;
    case 'D':
      message = decodeDelete(r);
      break;
    case 'T':
      message = decodeTruncate(r);
      break;
    case 'M':
      message = decodeLogicalMessage(r);
      break;
    default:
      throw new Error(`unknown pgoutput message tag ${tagName(tag)}`);
  }
  r.end();
  if (xid !== undefined) (message as { xid?: number }).xid = xid;
  return message;
}

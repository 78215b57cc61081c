/**
 * The SQL one side of a comparison runs. Only counts and hash sums leave the server, except
 * for the rows of the final small ranges of a bisection (key text + row hash).
 */
import type pg from 'pg';
import { type TableRef } from '../catalog/tables.js';
import { oneStatement, quoteIdent, quoteTable } from '../sql.js';
import { whereCondition } from '../spec/where.js';
import { PgferryError } from '../errors.js';

/** Key values in PostgreSQL text form, in primary key order. */
export type Key = string[];

/** A key range: `lo` inclusive, `hi` exclusive, null = unbounded. */
export interface Range {
  lo: Key | null;
  hi: Key | null;
}

export const WHOLE_TABLE: Range = { lo: null, hi: null };

/** Row count and two order-independent sums of 64-bit slices of the row hashes (128 bits in all). */
export interface Checksum {
  rows: number;
  a: bigint;
  b: bigint;
}

export const sameChecksum = (x: Checksum, y: Checksum) => x.rows === y.rows && x.a === y.a && x.b === y.b;
export const minus = (x: Checksum, y: Checksum): Checksum => ({ rows: x.rows - y.rows, a: x.a - y.a, b: x.b - y.b });

export interface RowHash {
  key: Key;
  hash: string;
}

/** A checksum bucket of the source: its first key and its checksum. */
export interface Bucket {
  first: Key;
  checksum: Checksum;
}

/**
 * A range's checksum from its rows' text forms: the count and two sums of 64-bit hashes with
 * different seeds (128 bits, order-independent). hashtextextended is several times cheaper
 * than md5 plus hex slicing, and the comparison is CPU-bound on both sides.
 */
const sums = (rowText: string) =>
  `count(*) AS rows, sum(hashtextextended(${rowText}, 0)) AS a, sum(hashtextextended(${rowText}, 1)) AS b`;

const toChecksum = (row: { rows: string; a: string | null; b: string | null }): Checksum => ({
  rows: Number(row.rows),
  a: BigInt(row.a ?? 0),
  b: BigInt(row.b ?? 0),
});

export class Side {
  private readonly table: string;
  private readonly rowText: string;
  private readonly hash: string;
  private readonly keyList: string;
  private readonly keyOrder: string;
  private readonly keyText: string;
  /** The `where` filter, parenthesized; only the source side has one. */
  private readonly filter: string | undefined;

  private exclusion: { values: (string | null)[][]; condition: (firstParam: number) => string } | undefined;

  private constructor(
    private readonly client: pg.Client,
    private readonly ref: TableRef,
    private readonly columns: string[],
    private readonly key: string[],
    /** Type names of the key columns on this side, for casting bound text values. */
    private readonly keyTypes: string[],
    private readonly whereText: string | undefined,
  ) {
    this.filter = whereText ? whereCondition(whereText, ref) : undefined;
    this.table = quoteTable(ref);
    this.rowText = `ROW(${columns.map(quoteIdent).join(', ')})::text`;
    this.hash = `md5(${this.rowText})`;
    this.keyList = key.map(quoteIdent).join(', ');
    // Qualified, because a bare ORDER BY name would pick the `::text` output column of the same name.
    this.keyOrder = key.map((k) => `${this.table}.${quoteIdent(k)}`).join(', ');
    this.keyText = key.map((k) => `${quoteIdent(k)}::text`).join(', ');
  }

  /**
   * This side without the rows of `keys` (values of the key columns, in order): rows that
   * changed while they were compared (consistent-pair.ts). Only a comparison that found a
   * difference reads through it; the first pass subtracts their hashes instead (keysChecksum).
   */
  excluding(keys: (string | null)[][]): Side {
    if (keys.length === 0) return this;
    const side = new Side(this.client, this.ref, this.columns, this.key, this.keyTypes, this.whereText);
    side.exclusion = {
      values: this.keyArrays(keys),
      condition: (first: number) => {
        const { args, names, match } = this.keyJoin('pgferry_excluded', first);
        return `NOT EXISTS (SELECT 1 FROM unnest(${args}) pgferry_excluded(${names.join(', ')}) WHERE ${match.join(' AND ')})`;
      },
    };
    return side;
  }

  static async open(client: pg.Client, ref: TableRef, columns: string[], key: string[], filter?: string): Promise<Side> {
    let types: string[] = [];
    if (key.length > 0) {
      const { rows } = await client.query<{ name: string; type: string | null }>(
        `SELECT k.name, format_type(a.atttypid, NULL) AS type
           FROM unnest($2::text[]) WITH ORDINALITY k(name, ord)
           LEFT JOIN pg_attribute a ON a.attrelid = $1::regclass AND a.attname = k.name AND a.attnum > 0 AND NOT a.attisdropped
          ORDER BY k.ord`,
        [quoteTable(ref), key],
      );
      const missing = rows.find((r) => r.type === null);
      if (missing) throw new PgferryError('pgferry.CompareFailed', `${ref.schema}.${ref.name} has no key column "${missing.name}"`);
      types = rows.map((r) => r.type!);
    }
    return new Side(client, ref, columns, key, types, filter);
  }

  async count(): Promise<number> {
    const { rows } = await this.client.query(oneStatement({ text: `SELECT count(*) AS rows FROM ONLY ${this.table}${this.where(WHOLE_TABLE, [])}` }));
    return Number(rows[0].rows);
  }

  async checksum(range: Range): Promise<Checksum> {
    const params: unknown[] = [];
    const where = this.where(range, params);
    const { rows } = await this.client.query(
      oneStatement({ text: `SELECT ${sums('r')} FROM (SELECT ${this.rowText} AS r FROM ONLY ${this.table}${where}) s`, values: params }),
    );
    return toChecksum(rows[0]);
  }

  /**
   * Splits the key space into buckets of `size` rows in one pass (one sort or index scan):
   * each bucket's first key and checksum, so the source is read once for boundaries and sums.
   */
  async buckets(size: number): Promise<Bucket[]> {
    const params: unknown[] = [size];
    const where = this.where(WHOLE_TABLE, params);
    const firsts = this.key.map((_, i) => `max(k${i}::text) FILTER (WHERE n % $1 = 0)`).join(', ');
    const { rows } = await this.client.query<unknown[]>(oneStatement({
      text: `SELECT ${sums('r')}, ${firsts}
               FROM (SELECT row_number() OVER (ORDER BY ${this.keyList}) - 1 AS n,
                            ${this.key.map((k, i) => `${quoteIdent(k)} AS k${i}`).join(', ')}, ${this.rowText} AS r
                       FROM ONLY ${this.table}${where}) s
              GROUP BY n / $1::bigint ORDER BY n / $1::bigint`,
      values: params,
      rowMode: 'array',
    }));
    return rows.map((row) => ({
      checksum: toChecksum({ rows: row[0] as string, a: row[1] as string | null, b: row[2] as string | null }),
      first: row.slice(3) as Key,
    }));
  }

  /** The key of the row at `offset` (0-based) within the range, in key order. */
  async keyAt(range: Range, offset: number): Promise<Key> {
    const params: unknown[] = [];
    const where = this.where(range, params);
    params.push(offset);
    const { rows } = await this.client.query<Key>(oneStatement({
      text: `SELECT ${this.keyText} FROM ONLY ${this.table}${where} ORDER BY ${this.keyOrder} OFFSET $${params.length} LIMIT 1`,
      values: params,
      rowMode: 'array',
    }));
    if (!rows[0]) throw new PgferryError('pgferry.CompareFailed', `${this.table} changed while it was being compared`);
    return rows[0];
  }

  async rowHashes(range: Range): Promise<RowHash[]> {
    const params: unknown[] = [];
    const where = this.where(range, params);
    const { rows } = await this.client.query<string[]>(oneStatement({
      text: `SELECT ${this.keyText}, ${this.hash} FROM ONLY ${this.table}${where} ORDER BY ${this.keyOrder}`,
      values: params,
      rowMode: 'array',
    }));
    return rows.map((row) => ({ key: row.slice(0, -1), hash: row[row.length - 1]! }));
  }

  /**
   * The row hashes of the rows with the given keys (text values of this side's key columns,
   * bound as parameters and cast to the columns' types); keys without a row are left out.
   */
  async rowHashesByKeys(keys: (string | null)[][]): Promise<Map<number, string>> {
    const { params, args, names, match } = this.keyLookup(keys);
    const { rows } = await this.client.query<[string, string]>(oneStatement({
      text: `SELECT pgferry_keys.pgferry_ord::text, r.hash
               FROM unnest(${args}) WITH ORDINALITY pgferry_keys(${names.join(', ')}, pgferry_ord)
               JOIN LATERAL (SELECT ${this.hash} AS hash FROM ONLY ${this.table} WHERE ${match.join(' AND ')}) r ON true`,
      values: params,
      rowMode: 'array',
    }));
    return new Map(rows.map(([ord, hash]) => [Number(ord) - 1, hash]));
  }

  /** The checksum of the rows with the given keys (as rowHashesByKeys finds them): for a batch of keys, or to subtract from a range's. */
  async keysChecksum(keys: (string | null)[][]): Promise<Checksum> {
    if (keys.length === 0) return { rows: 0, a: 0n, b: 0n };
    const { params, args, names, match } = this.keyLookup(keys);
    const { rows } = await this.client.query(
      oneStatement({
        text: `SELECT ${sums('r.r')}
                 FROM unnest(${args}) pgferry_keys(${names.join(', ')})
                 JOIN LATERAL (SELECT ${this.rowText} AS r FROM ONLY ${this.table} WHERE ${match.join(' AND ')}) r ON true`,
        values: params,
      }),
    );
    return toChecksum(rows[0]);
  }

  private keyLookup(keys: (string | null)[][]) {
    const { args, names, match } = this.keyJoin('pgferry_keys', 1);
    if (this.filter) match.push(this.filter);
    return { params: this.keyArrays(keys), args, names, match };
  }

  /** Keys as one text array per key column: the parameters keyJoin's `unnest` takes. */
  private keyArrays(keys: (string | null)[][]): (string | null)[][] {
    return this.key.map((_, i) => keys.map((key) => key[i] ?? null));
  }

  /** An `unnest` of bound key arrays (from parameter `$first`) named `alias`, and its match to this table's key columns. */
  private keyJoin(alias: string, first: number) {
    const args = this.key.map((_, i) => `$${first + i}::text[]`).join(', ');
    const names = this.key.map((_, i) => `pgferry_k${i}`);
    const match = this.key.map((k, i) => `${this.table}.${quoteIdent(k)} = ${alias}.${names[i]}::${this.keyTypes[i]}`);
    return { args, names, match };
  }

  private where(range: Range, params: unknown[]): string {
    const conditions = this.filter ? [this.filter] : [];
    if (this.exclusion) {
      conditions.push(this.exclusion.condition(params.length + 1));
      params.push(...this.exclusion.values);
    }
    // A row-value comparison `(a, b) >= ($1, $2)` orders like the primary key index and can use it.
    const tuple = this.key.length === 1 ? this.keyList : `(${this.keyList})`;
    const bind = (values: Key) => {
      const casts = values.map((value, i) => {
        params.push(value);
        return `$${params.length}::${this.keyTypes[i]}`;
      });
      return casts.length === 1 ? casts[0] : `(${casts.join(', ')})`;
    };
    if (range.lo) conditions.push(`${tuple} >= ${bind(range.lo)}`);
    if (range.hi) conditions.push(`${tuple} < ${bind(range.hi)}`);
    return conditions.length > 0 ? ` WHERE ${conditions.join(' AND ')}` : '';
  }
}

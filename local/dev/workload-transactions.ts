/**
 * The workload's transactions: ~70 % pgbench's builtin TPC-B, the rest spread over the tables
 * whose shapes change-data-capture gets wrong (workload-schema.ts). Each kind draws its values
 * from a seeded random source, so a run is repeatable and a retry repeats the same transaction.
 */
import type pg from 'pg';
import { DOC_BODY_DIGESTS, EVENT_KINDS, EXTRA_ACCOUNTS, KEY_LIMIT, KEY_STRIDE, type Sizes } from './workload-schema.js';

export type Random = () => number;

/** mulberry32: small, fast, deterministic. */
export function seededRandom(seed: number): Random {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Uniform integer in [low, high]. */
const between = (random: Random, low: number, high: number) => low + Math.floor(random() * (high - low + 1));

interface Context {
  size: Sizes;
  random: Random;
  client: number;
  sequence: number;
}

export type Query = (text: string, values?: unknown[]) => Promise<pg.QueryResult>;

/** One transaction kind: draws its values (so a retry repeats them) and returns the statements to run between BEGIN and COMMIT. */
type Kind = (context: Context) => (query: Query) => Promise<void>;

export const KINDS = {
  /** pgbench's builtin "TPC-B (sort of)". */
  tpcb: ({ size, random }) => {
    const aid = between(random, 1, size.accounts);
    const bid = between(random, 1, size.branches);
    const tid = between(random, 1, size.tellers);
    const delta = between(random, -5000, 5000);
    return async (query) => {
      await query('UPDATE public.pgbench_accounts SET abalance = abalance + $1 WHERE aid = $2', [delta, aid]);
      await query('SELECT abalance FROM public.pgbench_accounts WHERE aid = $1', [aid]);
      await query('UPDATE public.pgbench_tellers SET tbalance = tbalance + $1 WHERE tid = $2', [delta, tid]);
      await query('UPDATE public.pgbench_branches SET bbalance = bbalance + $1 WHERE bid = $2', [delta, bid]);
      await query('INSERT INTO public.pgbench_history (tid, bid, aid, delta, mtime) VALUES ($1, $2, $3, $4, CURRENT_TIMESTAMP)', [
        tid,
        bid,
        aid,
        delta,
      ]);
    };
  },
  /** Leaves the TOASTed body unchanged: logical decoding sends it as "unchanged TOAST". */
  doc_touch: ({ size, random }) => {
    const id = between(random, 1, size.docs);
    return async (query) => {
      await query('UPDATE public.workload_docs SET version = version + 1, touched_at = clock_timestamp() WHERE id = $1', [id]);
    };
  },
  doc_rewrite: ({ size, random, client, sequence }) => {
    const id = between(random, 1, size.docs);
    const salt = `${client}:${sequence}:${between(random, 0, 0x7fffffff)}`;
    return async (query) => {
      await query(
        `UPDATE public.workload_docs
            SET body = (SELECT string_agg(md5($2::text || ':' || g), '' ORDER BY g) FROM generate_series(1, $3::int) AS g),
                version = version + 1, touched_at = clock_timestamp()
          WHERE id = $1`,
        [id, salt, DOC_BODY_DIGESTS],
      );
    };
  },
  event_insert: ({ random, client, sequence }) => {
    const kind = EVENT_KINDS[between(random, 0, EVENT_KINDS.length - 1)]!;
    const payload = JSON.stringify({ n: between(random, 0, 49), client, sequence, tags: ['live', kind] });
    return async (query) => {
      await query('INSERT INTO public.workload_events (kind, payload, at) VALUES ($1, $2::jsonb, clock_timestamp())', [kind, payload]);
    };
  },
  /** The same row twice: a table without a key holding duplicates. */
  event_insert_twice: ({ random }) => {
    const kind = EVENT_KINDS[between(random, 0, EVENT_KINDS.length - 1)]!;
    const payload = JSON.stringify({ n: between(random, 0, 49), twice: true });
    return async (query) => {
      for (let i = 0; i < 2; i++) {
        await query('INSERT INTO public.workload_events (kind, payload, at) VALUES ($1, $2::jsonb, now())', [kind, payload]);
      }
    };
  },
  /** Deletes one row of possibly several identical ones. */
  event_delete: ({ random }) => {
    const kind = EVENT_KINDS[between(random, 0, EVENT_KINDS.length - 1)]!;
    return async (query) => {
      await query('DELETE FROM public.workload_events WHERE ctid = (SELECT ctid FROM public.workload_events WHERE kind = $1 LIMIT 1)', [
        kind,
      ]);
    };
  },
  scratch_insert: ({ random, client, sequence }) => {
    const rows = between(random, 2, 10);
    const note = `client ${client} txn ${sequence}`;
    return async (query) => {
      await query("INSERT INTO public.workload_scratch (note) SELECT $1::text || ' #' || g FROM generate_series(1, $2::int) AS g", [note, rows]);
    };
  },
  /** A migration's long lock on the table (COPY) must not stall the workload behind this TRUNCATE for long. */
  scratch_truncate: () => async (query) => {
    await query("SET LOCAL lock_timeout = '2s'");
    await query('TRUNCATE public.workload_scratch');
  },
  /** Primary key change: the key moves by KEY_STRIDE (or back to its residue), which no other key can hold. */
  key_update: ({ random }) => {
    const probe = between(random, 1, KEY_LIMIT);
    return async (query) => {
      const found = await query(
        `(SELECT k FROM public.workload_keys WHERE k >= $1 ORDER BY k LIMIT 1)
         UNION ALL (SELECT k FROM public.workload_keys ORDER BY k LIMIT 1) LIMIT 1`,
        [probe],
      );
      const k = (found.rows[0] as { k: number } | undefined)?.k;
      if (k === undefined) return;
      const moved = k + KEY_STRIDE > KEY_LIMIT ? k % KEY_STRIDE : k + KEY_STRIDE;
      await query('UPDATE public.workload_keys SET k = k + $2 WHERE k = $1', [k, moved - k]);
    };
  },
  /** New accounts above the pgbench range, balance 0: the TPC-B invariant still holds. */
  account_insert: ({ size, random }) => {
    const aid = size.accounts + between(random, 1, EXTRA_ACCOUNTS);
    const bid = between(random, 1, size.branches);
    return async (query) => {
      await query(
        "INSERT INTO public.pgbench_accounts (aid, bid, abalance, filler) VALUES ($1, $2, 0, 'workload') ON CONFLICT (aid) DO NOTHING",
        [aid, bid],
      );
    };
  },
  /** Deletes one of the accounts account_insert added (never a pgbench account, whose balance counts). */
  account_delete: ({ size, random }) => {
    const probe = size.accounts + between(random, 1, EXTRA_ACCOUNTS);
    return async (query) => {
      await query(
        `DELETE FROM public.pgbench_accounts
          WHERE aid > $1 AND aid = ((SELECT aid FROM public.pgbench_accounts WHERE aid >= $2 ORDER BY aid LIMIT 1)
                                    UNION ALL (SELECT aid FROM public.pgbench_accounts WHERE aid > $1 ORDER BY aid LIMIT 1) LIMIT 1)`,
        [size.accounts, probe],
      );
    };
  },
} satisfies Record<string, Kind>;

export type WorkloadKind = keyof typeof KINDS;

/** Percent of transactions per kind. */
const MIX: Record<WorkloadKind, number> = {
  tpcb: 70,
  doc_touch: 8,
  doc_rewrite: 1.5,
  event_insert: 3.5,
  event_insert_twice: 1.5,
  event_delete: 3,
  scratch_insert: 4,
  scratch_truncate: 0.5,
  key_update: 4,
  account_insert: 2,
  account_delete: 2,
};

export const WORKLOAD_KINDS = Object.keys(KINDS) as WorkloadKind[];

export function pickKind(random: Random): WorkloadKind {
  let point = random() * 100;
  for (const kind of WORKLOAD_KINDS) {
    point -= MIX[kind];
    if (point < 0) return kind;
  }
  return 'tpcb';
}

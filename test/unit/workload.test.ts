import { describe, expect, it } from 'vitest';
import { sizes } from '../../local/dev/workload-schema.js';
import { pickKind, seededRandom, WORKLOAD_KINDS } from '../../local/dev/workload-transactions.js';
import { fatalReason, RateSchedule, type PgError } from '../../local/dev/workload.js';

describe('RateSchedule', () => {
  it('hands out a fixed schedule whatever the transactions took, and catches up at most maxLagMs', () => {
    const schedule = new RateSchedule(100, 1000);
    expect([0, 0, 0].map(() => schedule.claim(0))).toEqual([0, 10, 20]);
    // A slow transaction does not push the schedule back: the next slot is still 30.
    expect(schedule.claim(25)).toBe(30);
    // After a 5 s stall, the schedule restarts 1 s behind: 100 transactions of catching up, not 500.
    expect(schedule.claim(5040)).toBe(4040);
    expect(schedule.claim(5040)).toBe(4050);
    expect(() => new RateSchedule(0)).toThrow(/ratePerSecond/);
  });
});

describe('workload sizes', () => {
  it('derives every table size from the scale, as pgbench -i does', () => {
    expect(sizes({ scale: 2, accountsPerScale: 1000 })).toMatchObject({ accounts: 2000, tellers: 20, branches: 2, docs: 100, events: 1000, scratch: 200, keys: 200, bigAccounts: false });
    expect(sizes({})).toMatchObject({ scale: 1, accountsPerScale: 100_000, accounts: 100_000 });
  });

  it('switches account ids to bigint where int would not hold the workload accounts', () => {
    expect(sizes({ scale: 20_000, accountsPerScale: 1 }).bigAccounts).toBe(true);
    expect(sizes({ scale: 21_000 }).bigAccounts).toBe(true);
    expect(sizes({ scale: 100 }).bigAccounts).toBe(false);
  });

  it('refuses a scale that is not a positive integer', () => {
    expect(() => sizes({ scale: 0 })).toThrow(/scale must be a positive integer, got 0/);
    expect(() => sizes({ accountsPerScale: 1.5 })).toThrow(/accountsPerScale/);
  });
});

describe('workload transactions', () => {
  it('draws the same values for the same seed, within [0, 1)', () => {
    const draws = (seed: number) => Array.from({ length: 5 }, seededRandom(seed));
    expect(draws(7)).toEqual(draws(7));
    expect(draws(7)).not.toEqual(draws(8));
    for (const value of draws(7)) expect(value >= 0 && value < 1).toBe(true);
  });

  it('picks kinds by the mix: mostly TPC-B, every kind now and then', () => {
    const random = seededRandom(1);
    const picked = Array.from({ length: 20_000 }, () => pickKind(random));
    const tpcb = picked.filter((kind) => kind === 'tpcb').length / picked.length;
    expect(tpcb).toBeGreaterThan(0.65);
    expect(tpcb).toBeLessThan(0.75);
    expect(new Set(picked)).toEqual(new Set(WORKLOAD_KINDS));
  });
});

describe('what ends the workload', () => {
  const pgError = (code: string | undefined, message: string): PgError => Object.assign(new Error(message), { code });

  it('stops on a read-only source or a lost connection', () => {
    expect(fatalReason(pgError('25006', 'read-only'), undefined)).toMatch(/^source is read-only \(25006/);
    expect(fatalReason(pgError('57P01', 'terminated'), undefined)).toMatch(/^connection terminated by administrator \(57P01/);
    expect(fatalReason(pgError('08006', 'gone'), undefined)).toBe('connection lost (08006): gone');
  });

  it("takes the connection's error when the query's has no SQLSTATE", () => {
    expect(fatalReason(pgError(undefined, 'Connection terminated unexpectedly'), pgError('57P01', 'terminating connection'))).toMatch(/57P01.*terminating connection/);
    expect(fatalReason(pgError(undefined, 'Connection terminated unexpectedly'), pgError(undefined, 'socket closed'))).toBe('connection lost: socket closed');
  });

  it('goes on after a deadlock, a serialization failure or a constraint error', () => {
    expect(fatalReason(pgError('40P01', 'deadlock'), undefined)).toBeUndefined();
    expect(fatalReason(pgError('40001', 'serialization'), undefined)).toBeUndefined();
    expect(fatalReason(pgError('23505', 'duplicate key'), undefined)).toBeUndefined();
  });
});

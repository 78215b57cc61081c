/** The CDC applier's conflict policy (one place: ConflictResolver), without PostgreSQL. */
import { describe, expect, it, vi } from 'vitest';
import { ApplyConflictError, ConflictResolver, isConflictViolation, type ConflictPolicy } from '../../engine/cdc/apply/conflict.js';

const conflict = { table: 'app.docs', operation: 'UPDATE' as const, key: 'id=1', commitLsn: '0/16B3748' };

function resolver(policy: ConflictPolicy) {
  const counts = { conflictsIgnored: 0, conflictsOverwritten: 0 };
  return { counts, conflicts: new ConflictResolver(policy, counts) };
}

describe('ConflictResolver', () => {
  it('"error" throws a readable ApplyConflictError and writes nothing', async () => {
    const { counts, conflicts } = resolver('error');
    const write = vi.fn(async () => 1);
    const error = await conflicts.resolve(conflict, write).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ApplyConflictError);
    expect((error as ApplyConflictError).details).toEqual(conflict);
    expect((error as Error).message).toContain('an UPDATE of app.docs found no row with id=1 on the target');
    expect((error as Error).message).toContain('commit LSN 0/16B3748');
    expect(write).not.toHaveBeenCalled();
    expect(counts).toEqual({ conflictsIgnored: 0, conflictsOverwritten: 0 });
  });

  it('names an INSERT conflict as an existing row', async () => {
    const { conflicts } = resolver('error');
    await expect(conflicts.resolve({ ...conflict, operation: 'INSERT' }, 'matches')).rejects.toThrow(/an INSERT into app\.docs found a row with id=1 already/);
  });

  it('"ignore" skips the change and counts it', async () => {
    const { counts, conflicts } = resolver('ignore');
    const write = vi.fn(async () => 1);
    await conflicts.resolve(conflict, write);
    expect(write).not.toHaveBeenCalled();
    expect(counts).toEqual({ conflictsIgnored: 1, conflictsOverwritten: 0 });
  });

  it('"overwrite" writes the source row and counts it', async () => {
    const { counts, conflicts } = resolver('overwrite');
    const write = vi.fn(async () => 1);
    await conflicts.resolve(conflict, write);
    expect(write).toHaveBeenCalledOnce();
    expect(counts).toEqual({ conflictsIgnored: 0, conflictsOverwritten: 1 });
  });

  it('"overwrite" counts a target that already matches as overwritten, and a row not fully known as ignored', async () => {
    const { counts, conflicts } = resolver('overwrite');
    await conflicts.resolve({ ...conflict, operation: 'DELETE' }, 'matches');
    await conflicts.resolve(conflict, 'unknown');
    expect(counts).toEqual({ conflictsIgnored: 1, conflictsOverwritten: 1 });
  });
});

describe('isConflictViolation', () => {
  it('is true for unique and exclusion violations only (the set-wise path redoes those row by row)', () => {
    expect(isConflictViolation({ code: '23505' })).toBe(true);
    expect(isConflictViolation({ code: '23P01' })).toBe(true);
    expect(isConflictViolation({ code: '23503' })).toBe(false);
    expect(isConflictViolation(new Error('x'))).toBe(false);
    expect(isConflictViolation(undefined)).toBe(false);
  });
});

import { describe, expect, it } from 'vitest';
import { conditional, fidelityChangeSteps, fidelityDataSql, fidelitySchemaSql, lineDifferences } from '../support/fidelity.js';

describe('the fidelity fixture builder', () => {
  it('keeps "@since" blocks from their major on and "@full" blocks outside the CDC variant', () => {
    const text = ['a', '-- @since 15', 'b', '-- @end', '-- @full', 'c', '-- @end', 'd'].join('\n');
    expect(conditional(text, 13)).toBe('a\nc\nd');
    expect(conditional(text, 15)).toBe('a\nb\nc\nd');
    expect(conditional(text, 18, { cdc: true })).toBe('a\nb\nd');
  });

  it('refuses blocks that are not closed, nested or ended twice', () => {
    expect(() => conditional('-- @since 14\na', 15)).toThrow('has no "-- @end"');
    expect(() => conditional('-- @since 14\n-- @full\n-- @end', 15)).toThrow('fixture line 2: "-- @full" inside "-- @since 14"');
    expect(() => conditional('a\n-- @end', 15)).toThrow('fixture line 2: "-- @end" without a block to end');
  });

  it('leaves out of the CDC variant what CDC must refuse, and nothing else of the schema', () => {
    for (const major of [13, 15, 17, 18]) {
      expect(fidelitySchemaSql(major)).toMatch(/CREATE UNLOGGED TABLE/);
      expect(fidelitySchemaSql(major)).toMatch(/PRIMARY KEY DEFERRABLE/);
      expect(fidelitySchemaSql(major, { cdc: true })).not.toMatch(/UNLOGGED|PRIMARY KEY DEFERRABLE/);
      expect(fidelityDataSql(major, { cdc: true })).not.toMatch(/fid\.scratch|fid\.deferred_pk/);
    }
  });

  it('has a change step for each CDC defect of the issue', () => {
    const steps = fidelityChangeSteps(15).map((step) => step.name);
    for (const defect of [/composite/, /TRUNCATE ONLY/, /reg\*/, /ENABLE ALWAYS and ENABLE REPLICA/, /large objects/, /materialized views/]) {
      expect(steps.some((name) => defect.test(name)), String(defect)).toBe(true);
    }
    expect(fidelityChangeSteps(15).every((step) => step.sql.trim().length > 0)).toBe(true);
  });

  it('compares lines as multisets', () => {
    expect(lineDifferences(['a', 'b', 'b', 'c'], ['b', 'a', 'd'])).toEqual({ onlyInSource: ['b', 'c'], onlyInTarget: ['d'] });
  });
});

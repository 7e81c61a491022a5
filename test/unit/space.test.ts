// Growth rate and the "drive full in N days" forecast, on tables of backups (no clock, no disk).
import { describe, expect, it } from 'vitest';
import { forecastFull, growthRate } from '../../src-main/engine/space.js';

const day = (d: number, bytesAdded: number): { time: string; bytesAdded: number } => ({ time: new Date(Date.UTC(2026, 0, 1 + d, 23)).toISOString(), bytesAdded });

describe('space forecast', () => {
  it('measures what the backups after the first added per day, over the last 30 days', () => {
    // 10 nightly backups of 2 MB each after the first (a huge initial one that must not count).
    const r = growthRate([day(0, 5e9), ...Array.from({ length: 9 }, (_, i) => day(i + 1, 2e6))]);
    expect(r).toEqual({ days: 9, backups: 10, bytesPerDay: 2e6 });
    // Only the last 30 days before the newest count: a burst 40 days earlier is left out.
    const old = growthRate([day(0, 1e6), day(1, 9e9), day(41, 0), day(51, 1e6), day(61, 2e6)]);
    expect(old).toEqual({ days: 20, backups: 3, bytesPerDay: 150_000 });
    // Weekly backups work too (the drive case): 3 in 14 days.
    expect(growthRate([day(0, 1e9), day(7, 7e6), day(14, 7e6)])).toEqual({ days: 14, backups: 3, bytesPerDay: 1e6 });
  });

  it('has no rate without history, and none from a single day', () => {
    expect(growthRate([])).toBeNull();
    expect(growthRate([day(0, 1e6)])).toBeNull();
    expect(growthRate([{ time: '2026-01-01T10:00:00Z', bytesAdded: 1 }, { time: '2026-01-01T20:00:00Z', bytesAdded: 1e6 }])).toBeNull();
  });

  it('forecasts the day the drive is full, and nothing when the vault does not grow', () => {
    const now = new Date('2026-03-01T12:00:00Z');
    expect(forecastFull(100e6, { days: 10, backups: 11, bytesPerDay: 2e6 }, now)).toEqual({ daysUntilFull: 50, fullOn: '2026-04-20' });
    expect(forecastFull(1e6, { days: 10, backups: 11, bytesPerDay: 2e6 }, now)).toEqual({ daysUntilFull: 0, fullOn: '2026-03-01' });
    expect(forecastFull(100e6, { days: 10, backups: 11, bytesPerDay: 0 }, now)).toBeNull();
    expect(forecastFull(100e6, null, now)).toBeNull();
  });
});

// Retention rules against tables of dates (no clock, no sleeping): month ends, leap days, ISO weeks across the
// new year, daylight-saving changes, protecting tags and "within".
import { describe, expect, it } from 'vitest';
import { applyPolicy, bucketKey, DEFAULT_POLICY, parseDuration } from '../../src-main/engine/retention.js';

const snap = (t: string, tags: string[] = []) => ({ id: t, time: new Date(t).toISOString(), tags });
const kept = (snaps: ReturnType<typeof snap>[], policy: Parameters<typeof applyPolicy>[1], tz = 'UTC') =>
  applyPolicy(snaps, policy, tz)
    .filter((d) => d.keep)
    .map((d) => d.snapshot.time)
    .sort();

/** One nightly backup at 23:00 UTC for n days ending on the given day. */
function nightly(lastDay: string, n: number): ReturnType<typeof snap>[] {
  const out = [];
  const end = Date.parse(`${lastDay}T23:00:00Z`);
  for (let i = 0; i < n; i++) out.push(snap(new Date(end - i * 86_400_000).toISOString()));
  return out;
}

describe('retention policy', () => {
  it('default 7 daily, 4 weekly, 12 monthly over a year of nightly backups keeps exactly what it says', () => {
    const snaps = nightly('2026-11-22', 400);
    const decisions = applyPolicy(snaps, DEFAULT_POLICY, 'UTC');
    const k = decisions.filter((d) => d.keep).map((d) => d.snapshot.time.slice(0, 10));
    // 7 newest days; ISO-week newest: Sun 22 Nov (also daily), Sun 15, 8, 1 Nov; month ends back to Dec 2025.
    expect(k).toEqual([
      '2026-11-22', '2026-11-21', '2026-11-20', '2026-11-19', '2026-11-18', '2026-11-17', '2026-11-16',
      '2026-11-15', '2026-11-08', '2026-11-01',
      '2026-10-31', '2026-09-30', '2026-08-31', '2026-07-31', '2026-06-30', '2026-05-31', '2026-04-30', '2026-03-31',
      '2026-02-28', '2026-01-31', '2025-12-31',
    ]);
    expect(decisions.find((d) => d.snapshot.time.startsWith('2026-11-22'))!.reasons).toEqual(['daily 1', 'weekly 1', 'monthly 1']);
    expect(decisions.find((d) => d.snapshot.time.startsWith('2026-02-28'))!.reasons).toEqual(['monthly 10']);
  });

  it('a leap year keeps 29 February as the end of its month', () => {
    expect(kept(nightly('2024-03-02', 10), { monthly: 2 })).toEqual(['2024-02-29T23:00:00.000Z', '2024-03-02T23:00:00.000Z']);
  });

  it('ISO weeks span the new year: 2026-12-31 and 2027-01-03 are the same week, 2027-01-04 starts the next', () => {
    expect(bucketKey('weekly', new Date('2026-12-31T12:00:00Z'), 'UTC')).toBe('2026-W53');
    expect(bucketKey('weekly', new Date('2027-01-03T12:00:00Z'), 'UTC')).toBe('2026-W53');
    expect(bucketKey('weekly', new Date('2027-01-04T12:00:00Z'), 'UTC')).toBe('2027-W01');
    expect(bucketKey('weekly', new Date('2024-12-30T12:00:00Z'), 'UTC')).toBe('2025-W01');
    expect(kept(nightly('2027-01-05', 10), { weekly: 2 })).toEqual(['2027-01-03T23:00:00.000Z', '2027-01-05T23:00:00.000Z']);
  });

  it("days are the clinic's local days, also on the days clocks change", () => {
    // Berlin, 29 March 2026 (23 hours long) and 25 October 2026 (25 hours long).
    const tz = 'Europe/Berlin';
    expect(bucketKey('daily', new Date('2026-03-28T23:30:00Z'), tz)).toBe('2026-3-29'); // 00:30 CET
    expect(bucketKey('daily', new Date('2026-03-29T21:30:00Z'), tz)).toBe('2026-3-29'); // 23:30 CEST
    expect(bucketKey('daily', new Date('2026-03-29T22:30:00Z'), tz)).toBe('2026-3-30');
    expect(bucketKey('daily', new Date('2026-10-25T22:30:00Z'), tz)).toBe('2026-10-25'); // 23:30 CET, 25-hour day
    // A backup at 23:30 local every night: 30 min before midnight in UTC terms shifts at the change, one per day still.
    const snaps = ['2026-03-27T22:30:00Z', '2026-03-28T22:30:00Z', '2026-03-29T21:30:00Z', '2026-03-30T21:30:00Z'].map((t) => snap(t));
    expect(kept(snaps, { daily: 4 }, tz)).toHaveLength(4);
    // Two backups 23 hours apart that Sydney's clock puts on one day (the change to standard time, 5 April).
    const two = ['2026-04-04T13:30:00Z', '2026-04-05T12:30:00Z'].map((t) => snap(t)); // 00:30 AEDT and 22:30 AEST, 5 April
    expect(kept(two, { daily: 5 }, 'Australia/Sydney')).toEqual(['2026-04-05T12:30:00.000Z']);
    expect(kept(two, { daily: 5 }, 'UTC')).toHaveLength(2);
  });

  it('several backups in one day: daily keeps the newest of that day', () => {
    const snaps = ['2026-05-01T08:00:00Z', '2026-05-01T12:00:00Z', '2026-05-01T23:00:00Z', '2026-05-02T09:00:00Z'].map((t) => snap(t));
    expect(kept(snaps, { daily: 2 })).toEqual(['2026-05-01T23:00:00.000Z', '2026-05-02T09:00:00.000Z']);
    expect(kept(snaps, { last: 3 })).toEqual(['2026-05-01T12:00:00.000Z', '2026-05-01T23:00:00.000Z', '2026-05-02T09:00:00.000Z']);
  });

  it('tags such as pre-migration protect a snapshot that no rule keeps', () => {
    const snaps = nightly('2026-06-30', 60);
    snaps[40]!.tags = ['pre-migration'];
    const d = applyPolicy(snaps, { daily: 3, keepTags: ['pre-migration'] }, 'UTC');
    const tagged = d.find((x) => x.snapshot.tags.includes('pre-migration'))!;
    expect(tagged.keep).toBe(true);
    expect(tagged.reasons).toEqual(['tag pre-migration']);
    expect(d.filter((x) => x.keep)).toHaveLength(4);
  });

  it('keep-within counts back from the newest snapshot, calendar-aware for months', () => {
    expect(parseDuration('1m')(new Date('2026-03-31T00:00:00Z')).toISOString()).toBe('2026-03-03T00:00:00.000Z');
    expect(parseDuration('1y')(new Date('2024-02-29T00:00:00Z')).toISOString()).toBe('2023-03-01T00:00:00.000Z');
    expect(kept(nightly('2026-06-30', 30), { within: '7d' })).toHaveLength(8);
    expect(kept(nightly('2026-06-30', 30), { within: '2w' })).toHaveLength(15);
  });

  it('refuses a policy that keeps nothing or has a malformed rule', () => {
    expect(() => applyPolicy([snap('2026-01-01T00:00:00Z')], {})).toThrow(/keep no backups/);
    expect(() => applyPolicy([snap('2026-01-01T00:00:00Z')], { daily: -1 })).toThrow(/whole number/);
    expect(() => applyPolicy([snap('2026-01-01T00:00:00Z')], { within: '3 days' })).toThrow(/not a duration/);
  });
});

// Retention: which snapshots a policy keeps, and why. Rules as in the seeds (and restic): keep the N most recent;
// the newest snapshot of each of the last N hours/days/weeks/months/years that have one; everything within a
// duration of the newest snapshot; anything with a protecting tag. Calendar buckets are computed in a named time
// zone, so a day is the clinic's day even across daylight-saving changes. Pure: no clock, no I/O.

export interface RetentionPolicy {
  last?: number;
  hourly?: number;
  daily?: number;
  weekly?: number;
  monthly?: number;
  yearly?: number;
  /** e.g. "30d", "2w", "6m", "1y", "1y6m", "36h": relative to the newest snapshot. */
  within?: string;
  /** Snapshots carrying any of these tags are always kept. */
  keepTags?: string[];
}

export const DEFAULT_POLICY: RetentionPolicy = { daily: 7, weekly: 4, monthly: 12, keepTags: ['pre-migration', 'pre-restore'] };

export interface Dated {
  id: string;
  time: string;
  tags: string[];
}

export interface Decision<T extends Dated> {
  snapshot: T;
  keep: boolean;
  /** The rules that keep it, e.g. ["daily 1", "monthly 3", "tag pre-migration"]. */
  reasons: string[];
}

const BUCKETS = ['hourly', 'daily', 'weekly', 'monthly', 'yearly'] as const;
type Bucket = (typeof BUCKETS)[number];

/** Parse "1y6m2w3d12h" into a function that moves a date back by that much (calendar-aware for y/m). */
export function parseDuration(s: string): (d: Date) => Date {
  const re = /(\d+)([ymwdh])/g;
  if (!/^(\d+[ymwdh])+$/.test(s)) throw new Error(`"${s}" is not a duration; use e.g. 30d, 2w, 6m, 1y or 1y6m (h, d, w, m, y)`);
  const parts: Array<[number, string]> = [];
  for (const m of s.matchAll(re)) parts.push([Number(m[1]), m[2]!]);
  return (d: Date) => {
    const t = new Date(d.getTime());
    for (const [n, u] of parts) {
      if (u === 'y') t.setUTCFullYear(t.getUTCFullYear() - n);
      else if (u === 'm') t.setUTCMonth(t.getUTCMonth() - n);
      else if (u === 'w') t.setTime(t.getTime() - n * 7 * 86_400_000);
      else if (u === 'd') t.setTime(t.getTime() - n * 86_400_000);
      else t.setTime(t.getTime() - n * 3_600_000);
    }
    return t;
  };
}

function zonedParts(d: Date, timeZone: string): { y: number; m: number; day: number; h: number } {
  const f = new Intl.DateTimeFormat('en-US', { timeZone, year: 'numeric', month: 'numeric', day: 'numeric', hour: 'numeric', hourCycle: 'h23' });
  const p = Object.fromEntries(f.formatToParts(d).map((x) => [x.type, x.value]));
  return { y: Number(p.year), m: Number(p.month), day: Number(p.day), h: Number(p.hour) };
}

/** ISO 8601 week (year and number) of a calendar date. */
function isoWeek(y: number, m: number, day: number): string {
  const d = new Date(Date.UTC(y, m - 1, day));
  const dow = (d.getUTCDay() + 6) % 7; // Monday = 0
  d.setUTCDate(d.getUTCDate() - dow + 3); // Thursday of this week decides the year
  const yearStart = Date.UTC(d.getUTCFullYear(), 0, 1);
  const week = Math.ceil(((d.getTime() - yearStart) / 86_400_000 + 1) / 7);
  return `${d.getUTCFullYear()}-W${String(week).padStart(2, '0')}`;
}

export function bucketKey(bucket: Bucket, d: Date, timeZone: string): string {
  const { y, m, day, h } = zonedParts(d, timeZone);
  switch (bucket) {
    case 'hourly':
      return `${y}-${m}-${day} ${h}`;
    case 'daily':
      return `${y}-${m}-${day}`;
    case 'weekly':
      return isoWeek(y, m, day);
    case 'monthly':
      return `${y}-${m}`;
    case 'yearly':
      return `${y}`;
  }
}

/** A policy as stored with a vault: the rules and the time zone whose calendar they count in. Throws with what is
 * wrong (a rule, or an unknown zone). */
export function validateStoredPolicy(p: RetentionPolicy & { timeZone?: string }): void {
  if (typeof p !== 'object' || p === null) throw new Error('it is not an object');
  validatePolicy(p);
  if (p.timeZone) new Intl.DateTimeFormat('en-US', { timeZone: p.timeZone });
}

export function validatePolicy(p: RetentionPolicy): void {
  for (const k of ['last', ...BUCKETS] as const) {
    const v = p[k];
    if (v !== undefined && (!Number.isInteger(v) || v < 0)) throw new Error(`keep-${k} must be a whole number of 0 or more (got ${v})`);
  }
  if (p.within) parseDuration(p.within);
  const keepsSomething = (p.last ?? 0) > 0 || BUCKETS.some((b) => (p[b] ?? 0) > 0) || !!p.within;
  if (!keepsSomething) throw new Error('this policy would keep no backups at all; give at least one --keep-* rule');
}

/** Decide for every snapshot (any order in, newest first out). */
export function applyPolicy<T extends Dated>(snapshots: T[], policy: RetentionPolicy, timeZone = Intl.DateTimeFormat().resolvedOptions().timeZone): Array<Decision<T>> {
  validatePolicy(policy);
  const sorted = [...snapshots].sort((a, b) => Date.parse(b.time) - Date.parse(a.time) || (a.id < b.id ? 1 : -1));
  const out = sorted.map((snapshot) => ({ snapshot, keep: false, reasons: [] as string[] }));
  if (out.length === 0) return out;
  out.forEach((d, i) => {
    if (i < (policy.last ?? 0)) d.reasons.push(`last ${i + 1}`);
  });
  for (const b of BUCKETS) {
    const n = policy[b] ?? 0;
    let used = 0;
    let lastKey: string | undefined;
    for (const d of out) {
      if (used >= n) break;
      const key = bucketKey(b, new Date(d.snapshot.time), timeZone);
      if (key === lastKey) continue;
      lastKey = key;
      used++;
      d.reasons.push(`${b} ${used}`);
    }
  }
  if (policy.within) {
    const since = parseDuration(policy.within)(new Date(out[0]!.snapshot.time)).getTime();
    for (const d of out) if (Date.parse(d.snapshot.time) >= since) d.reasons.push(`within ${policy.within}`);
  }
  const tags = new Set(policy.keepTags ?? []);
  for (const d of out) for (const t of d.snapshot.tags) if (tags.has(t)) d.reasons.push(`tag ${t}`);
  for (const d of out) d.keep = d.reasons.length > 0;
  return out;
}

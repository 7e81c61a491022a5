// Space accounting: what each backup alone holds, what the vault uses and could give back, and when the drive will
// be full at the recent growth rate. The growth rate comes from the backups' own records (bytes each one added),
// so it is known on any PC that can open the vault.
import { analyzeUsage, type SnapshotUsage } from './usage.js';
import type { Vault } from './vault/vault.js';

export interface GrowthRate {
  /** Days between the oldest and newest backup in the window. */
  days: number;
  backups: number;
  bytesPerDay: number;
}

export interface SpaceReport {
  snapshots: SnapshotUsage[];
  vault: {
    /** Pack files as stored (what the data folder takes). */
    packBytes: number;
    /** Bytes in packs that backups need. */
    usedBytes: number;
    /** What prune could give back: unneeded blobs in listed packs, and packs no index lists. */
    reclaimableBytes: number;
    /** Index files and snapshots. */
    metadataBytes: number;
    packs: number;
  };
  drive: { freeBytes: number; totalBytes: number } | null;
  growth: GrowthRate | null;
  forecast: { daysUntilFull: number; fullOn: string } | null;
}

/** Growth over the backups of the last `windowDays` before the newest: the bytes they added per day. */
export function growthRate(backups: Array<{ time: string; bytesAdded: number }>, windowDays = 30): GrowthRate | null {
  const sorted = [...backups].sort((a, b) => Date.parse(a.time) - Date.parse(b.time));
  const newest = sorted[sorted.length - 1];
  if (!newest) return null;
  const from = Date.parse(newest.time) - windowDays * 86_400_000;
  const inWindow = sorted.filter((b) => Date.parse(b.time) >= from);
  const oldest = inWindow[0]!;
  const days = (Date.parse(newest.time) - Date.parse(oldest.time)) / 86_400_000;
  if (inWindow.length < 2 || days < 1) return null;
  // The oldest backup in the window is the starting point; what came after it is the growth.
  const added = inWindow.slice(1).reduce((a, b) => a + b.bytesAdded, 0);
  return { days: Math.round(days * 10) / 10, backups: inWindow.length, bytesPerDay: Math.round(added / days) };
}

export function forecastFull(freeBytes: number, rate: GrowthRate | null, now: Date): SpaceReport['forecast'] {
  if (!rate || rate.bytesPerDay <= 0) return null;
  const days = Math.floor(freeBytes / rate.bytesPerDay);
  return { daysUntilFull: days, fullOn: new Date(now.getTime() + days * 86_400_000).toISOString().slice(0, 10) };
}

export async function spaceReport(vault: Vault, now = new Date()): Promise<SpaceReport> {
  const index = await vault.loadIndex({ recoverOrphans: true });
  const { snapshots } = await vault.listSnapshots({ entries: false });
  const usage = await analyzeUsage(index, snapshots, (id) => vault.readSnapshot(id));
  let packBytes = 0;
  for (const id of await vault.storage.list('data')) packBytes += await vault.storage.size('data', id);
  let metadataBytes = 0;
  for (const kind of ['index', 'snapshots'] as const) for (const n of await vault.storage.list(kind)) metadataBytes += await vault.storage.size(kind, n);
  const disk = await vault.storage.diskSpace();
  const growth = growthRate(snapshots.map((s) => ({ time: s.snapshot.time, bytesAdded: s.snapshot.totals.bytesAdded })));
  return {
    snapshots: usage.snapshots,
    vault: { packBytes, usedBytes: usage.usedBytes, reclaimableBytes: usage.storedBytes - usage.usedBytes, metadataBytes, packs: index.packs.size },
    drive: disk ? { freeBytes: disk.free, totalBytes: disk.total } : null,
    growth,
    forecast: disk ? forecastFull(disk.free, growth, now) : null,
  };
}

// The writer lock: one JSON file in locks/ naming host, pid and times, refreshed while the writer runs.
// A lock whose process is gone (same host) or whose refresh is long overdue is stale and cleared, with a log line.
import { randomBytes } from 'node:crypto';
import * as os from 'node:os';
import type { Storage } from './storage.js';
import { LockedError, cannotWriteVault } from '../errors.js';

export interface LockInfo {
  host: string;
  pid: number;
  created: string;
  refreshed: string;
  command: string;
}

export const REFRESH_MS = 60_000;
export const STALE_MS = 10 * 60_000;

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

export function isStale(lock: LockInfo, now: number, host = os.hostname()): string | undefined {
  const age = now - Date.parse(lock.refreshed);
  if (lock.host === host && !processAlive(lock.pid)) return `process ${lock.pid} on ${lock.host} is no longer running`;
  if (!(age < STALE_MS)) return `it was last refreshed ${Math.round(age / 60000)} minutes ago`;
  return undefined;
}

export class VaultLock {
  private timer: NodeJS.Timeout | undefined;
  private constructor(private readonly storage: Storage, readonly name: string, private info: LockInfo) {}

  static async acquire(storage: Storage, command: string, log: (msg: string) => void = () => undefined): Promise<VaultLock> {
    await clearStale(storage, log).catch((err: unknown) => {
      throw cannotWriteVault(storage.location, err);
    });
    const others = await readLocks(storage);
    if (others.length > 0) throw lockedError(others[0]!.info);
    const now = new Date().toISOString();
    const info: LockInfo = { host: os.hostname(), pid: process.pid, created: now, refreshed: now, command };
    const name = `${Date.now().toString(36)}-${randomBytes(6).toString('hex')}.json`;
    // A writer's first write to the vault: a drive that refuses writes is reported here, before any work is done.
    await storage.write('locks', name, Buffer.from(JSON.stringify(info))).catch((err: unknown) => {
      throw cannotWriteVault(storage.location, err);
    });
    // Two writers racing: both wrote; the one whose name sorts later backs off. Code-unit order, not the locale's:
    // two computers sharing the drive must agree on which name is first.
    const all = await readLocks(storage);
    const first = all.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))[0];
    if (first && first.name !== name) {
      await storage.remove('locks', name);
      throw lockedError(first.info);
    }
    const lock = new VaultLock(storage, name, info);
    lock.timer = setInterval(() => void lock.refresh(), REFRESH_MS);
    lock.timer.unref();
    return lock;
  }

  private async refresh(): Promise<void> {
    this.info = { ...this.info, refreshed: new Date().toISOString() };
    await this.storage.write('locks', this.name, Buffer.from(JSON.stringify(this.info))).catch(() => undefined);
  }

  async release(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    await this.storage.remove('locks', this.name);
  }
}

function lockedError(info: LockInfo): LockedError {
  return new LockedError(
    `Another ClinicVault process is writing to this vault (${info.command} on ${info.host}, process ${info.pid}, since ${info.created}). ` +
      'Wait for it to finish and try again.',
  );
}

export async function readLocks(storage: Storage): Promise<Array<{ name: string; info: LockInfo; damaged?: boolean }>> {
  const out: Array<{ name: string; info: LockInfo; damaged?: boolean }> = [];
  for (const name of await storage.list('locks')) {
    try {
      const info: unknown = JSON.parse((await storage.read('locks', name)).toString('utf8'));
      if (typeof info !== 'object' || info === null) throw new Error('not a lock');
      out.push({ name, info: info as LockInfo });
    } catch {
      // Unparseable lock file: treat as stale-by-damage below.
      out.push({ name, info: { host: '?', pid: -1, created: '1970-01-01T00:00:00Z', refreshed: '1970-01-01T00:00:00Z', command: '?' }, damaged: true });
    }
  }
  return out;
}

export async function clearStale(storage: Storage, log: (msg: string) => void): Promise<number> {
  let cleared = 0;
  const now = Date.now();
  for (const { name, info, damaged } of await readLocks(storage)) {
    const why = damaged ? `the lock file locks/${name} was damaged (not readable)` : isStale(info, now);
    if (!why) continue;
    await storage.remove('locks', name);
    log(damaged ? `Cleared a stale lock: ${why}.` : `Cleared a stale lock left by ${info.command} (process ${info.pid} on ${info.host}, since ${info.created}): ${why}.`);
    cleared++;
  }
  return cleared;
}

// The local cache of a vault's list of backups, on this computer beside the index cache (index-cache.ts). Listing the
// backups read every snapshot whole: ~33 ms each for the bench data, most of it the database's chunk list, before
// every backup and restore; ~0.75 s with the 23 backups the default retention keeps, and more with tagged ones.
// The cache holds each snapshot as listed (its file lists and audit records left out), keyed by its id (decision
// 0024).
//
// A snapshot's id is the SHA-256 of its bytes, so an entry stands for exactly that file, for as long as the vault
// lists it; a snapshot not in the cache is read and added, one no longer listed (pruned, erased) is dropped. Only
// the listing of backup and restore uses it (and erase, which makes it again at its end): they still read in full
// each snapshot whose files they need, and verify, prune and the backup list read every snapshot. Sealed with the
// vault's key and bound to the vault's id.
import * as fsp from 'node:fs/promises';
import { open, seal } from './crypto.js';
import { localCache, writeLocalCache } from './index-cache.js';
import type { MasterKeys } from './keys.js';
import type { Snapshot } from './snapshot.js';

export class SnapshotCache {
  private readonly file: string;
  private readonly aad: string;

  constructor(dir: string, vaultId: string) {
    ({ file: this.file, aad: this.aad } = localCache(dir, 'snapshots', vaultId));
  }

  /** The cached listings by snapshot id; empty when there is no cache, or it is damaged or from another vault. */
  async read(keys: MasterKeys): Promise<Map<string, Snapshot>> {
    try {
      const entries = JSON.parse(open(keys.encryption, await fsp.readFile(this.file), this.aad).toString('utf8')) as unknown;
      if (!Array.isArray(entries)) return new Map();
      return new Map(entries.filter((e): e is [string, Snapshot] => Array.isArray(e) && typeof e[0] === 'string' && isListing(e[1])));
    } catch {
      return new Map();
    }
  }

  /** Keep these listings (snapshots without their file lists and audit records). */
  async write(keys: MasterKeys, listings: ReadonlyMap<string, Snapshot>): Promise<void> {
    await writeLocalCache(this.file, seal(keys.encryption, Buffer.from(JSON.stringify([...listings])), this.aad));
  }
}

/** Enough of a snapshot's shape to list it (a cache made by another version is read again from the vault). */
function isListing(s: unknown): s is Snapshot {
  const x = s as Partial<Snapshot> | null;
  return !!x && x.version === 1 && typeof x.time === 'string' && Array.isArray(x.sources) && x.sources.every((src) => Array.isArray(src.entries) && src.entries.length === 0);
}

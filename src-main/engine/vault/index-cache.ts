// The local cache of a vault's index, on this computer (the app's data folder), not in the vault. Reading the index
// files runs ~2 us of JavaScript per chunk to list each one (~120 ms for the bench vault's 57,500 chunks, before
// every backup, restore and check, and growing with the vault); the cache holds the merged index as it is in memory,
// so that reading it is one file and one decryption (decision 0023).
//
// It is valid only for the exact list of index files it was made from: their names are the SHA-256 of their bytes,
// so a list that matches means the same content. Anything else (a backup from another computer, a prune, a damaged
// or missing cache) makes the command read the index files, as without a cache, and write the cache again. It is
// sealed with the vault's key and bound to the vault's id, so it reveals nothing and cannot be forged or swapped.
import { createHash } from 'node:crypto';
import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import { open, sealPiecewise } from './crypto.js';
import { MasterIndex, type IndexCacheStore } from './index-file.js';
import type { MasterKeys } from './keys.js';
import { writeFileAtomic } from './storage.js';

const PIECE = 1024 * 1024;

/** Where a local cache of a vault is kept, and the associated data that binds its sealed bytes to that vault (the
 * index cache here, the list of backups in snapshot-cache.ts). The vault's id comes from its config.json: hashed,
 * it cannot name a file outside the cache folder. */
export function localCache(dir: string, kind: 'index' | 'snapshots', vaultId: string): { file: string; aad: string } {
  const name = kind === 'index' ? 'index-cache' : 'snapshot-cache';
  return { file: path.join(dir, `${kind}-${createHash('sha256').update(vaultId).digest('hex').slice(0, 32)}.bin`), aad: `clinicvault:${name}:v1:${vaultId}` };
}

/** Write a local cache's sealed bytes (whole, or in pieces as they are made). Not made durable: a cache lost in a
 * power cut is read again from the vault. */
export async function writeLocalCache(file: string, sealed: Uint8Array | Iterable<Uint8Array>): Promise<void> {
  await fsp.mkdir(path.dirname(file), { recursive: true, mode: 0o700 });
  await writeFileAtomic(file, sealed, { durable: false });
}

export class IndexCache implements IndexCacheStore {
  private readonly file: string;
  private readonly aad: string;

  constructor(dir: string, vaultId: string) {
    ({ file: this.file, aad: this.aad } = localCache(dir, 'index', vaultId));
  }

  /** The cached index, if there is one for exactly these index files. */
  async read(keys: MasterKeys, files: readonly string[]): Promise<MasterIndex | undefined> {
    let sealed: Buffer;
    try {
      sealed = await fsp.readFile(this.file);
    } catch {
      return undefined;
    }
    try {
      const index = MasterIndex.fromCache(open(keys.encryption, sealed, this.aad));
      const cached = index.files!;
      return cached.length === files.length && cached.every((f, i) => f === files[i]) ? index : undefined;
    } catch {
      return undefined; // damaged, or made by another version: read the index files
    }
  }

  /** Keep `index` as the content of these index files (sorted as the vault lists them). Sealed and written a piece
   * at a time: a backup writes it at its end, where its memory peaks (sealed whole, ~6 MB for the bench vault, it
   * raised a first backup's peak). */
  async write(keys: MasterKeys, index: MasterIndex, files: readonly string[]): Promise<void> {
    await writeLocalCache(this.file, sealPiecewise(keys.encryption, index.cacheParts([...files].sort()), this.aad, PIECE));
  }
}

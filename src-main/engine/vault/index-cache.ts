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

export class IndexCache implements IndexCacheStore {
  private readonly file: string;
  private readonly aad: string;

  constructor(dir: string, vaultId: string) {
    // The vault's id comes from its config.json: hashed, it cannot name a file outside the cache folder.
    this.file = path.join(dir, `index-${createHash('sha256').update(vaultId).digest('hex').slice(0, 32)}.bin`);
    this.aad = `clinicvault:index-cache:v1:${vaultId}`;
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
   * raised a first backup's peak). Not made durable: a cache lost in a power cut is read again from the vault. */
  async write(keys: MasterKeys, index: MasterIndex, files: readonly string[]): Promise<void> {
    await fsp.mkdir(path.dirname(this.file), { recursive: true, mode: 0o700 });
    await writeFileAtomic(this.file, sealPiecewise(keys.encryption, index.cacheParts([...files].sort()), this.aad, PIECE), { durable: false });
  }
}

// BlobReader: the read side. Finds a chunk through the index, reads it from its pack (keeping a few packs open),
// and returns it only after decryption, decompression and id check all succeed.
import * as fsp from 'node:fs/promises';
import type { MasterIndex } from './vault/index-file.js';
import { ChunkIntegrityError, openBlob } from './vault/pack.js';
import type { Vault } from './vault/vault.js';

const MAX_OPEN = 16;

export class BlobReader {
  private readonly handles = new Map<string, Promise<fsp.FileHandle>>();

  constructor(private readonly vault: Vault, private readonly index: MasterIndex) {}

  private handle(packId: string): Promise<fsp.FileHandle> {
    let h = this.handles.get(packId);
    if (h) {
      this.handles.delete(packId);
      this.handles.set(packId, h);
      return h;
    }
    if (this.handles.size >= MAX_OPEN) {
      const [oldest, ph] = this.handles.entries().next().value as [string, Promise<fsp.FileHandle>];
      this.handles.delete(oldest);
      void ph.then((fh) => fh.close()).catch(() => undefined);
    }
    h = fsp.open(this.vault.storage.filePath('data', packId), 'r');
    h.catch(() => this.handles.delete(packId));
    this.handles.set(packId, h);
    return h;
  }

  async read(id: Buffer): Promise<Buffer> {
    const idHex = id.toString('hex');
    const entry = this.index.get(idHex);
    if (!entry) throw new ChunkIntegrityError(idHex, '(none)', 'is not in any pack (missing from the vault)');
    let fh: fsp.FileHandle;
    try {
      fh = await this.handle(entry.pack);
    } catch (err) {
      throw new ChunkIntegrityError(idHex, entry.pack, `its pack cannot be opened (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`);
    }
    const buf = Buffer.allocUnsafe(entry.blob.length);
    const { bytesRead } = await fh.read(buf, 0, entry.blob.length, entry.blob.offset);
    if (bytesRead !== entry.blob.length) throw new ChunkIntegrityError(idHex, entry.pack, 'its pack is truncated');
    return openBlob(this.vault.keys, buf, entry.blob, entry.pack);
  }

  async close(): Promise<void> {
    for (const h of this.handles.values()) await h.then((fh) => fh.close()).catch(() => undefined);
    this.handles.clear();
  }
}

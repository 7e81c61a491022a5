// ChunkStore: the write side of the vault during a backup. It names chunks (HMAC-SHA256), drops duplicates,
// compresses only what pays, seals, fills packs and writes them. Packs are durable before the index lists them.
import { deflateRawSync } from 'node:zlib';
import { hmac, seal } from './vault/crypto.js';
import type { MasterKeys } from './vault/keys.js';
import { assemblePack, BLOB_AAD, BlobType, Compression } from './vault/pack.js';
import { writeIndexFile, type MasterIndex, type PackRecord } from './vault/index-file.js';
import type { Storage } from './vault/storage.js';

const SAMPLE = 4096;

/** Compress when it pays: a 4 KiB sample decides for large chunks, so photos cost one tiny deflate each. */
export function maybeCompress(data: Buffer): { payload: Buffer; compression: number } {
  if (data.length < 64) return { payload: data, compression: Compression.None };
  if (data.length > SAMPLE * 2) {
    const probe = deflateRawSync(data.subarray(0, SAMPLE), { level: 1 });
    if (probe.length > SAMPLE * 0.9) return { payload: data, compression: Compression.None };
  }
  const packed = deflateRawSync(data, { level: 1 });
  if (packed.length <= data.length * 0.9) return { payload: packed, compression: Compression.DeflateRaw };
  return { payload: data, compression: Compression.None };
}

export interface ChunkStoreStats {
  chunksNew: number;
  chunksDuplicate: number;
  bytesNew: number;
  bytesStored: number;
  packsWritten: number;
}

type Pending = { id: Buffer; type: number; compression: number; rawLength: number; sealed: Buffer };

export class ChunkStore {
  readonly stats: ChunkStoreStats = { chunksNew: 0, chunksDuplicate: 0, bytesNew: 0, bytesStored: 0, packsWritten: 0 };
  private pending: Pending[] = [];
  private pendingBytes = 0;
  private readonly pendingIds = new Set<string>();
  private readonly written: PackRecord[] = [];
  private flushing: Promise<void> = Promise.resolve();
  private inFlight = 0;

  constructor(
    private readonly storage: Storage,
    private readonly keys: MasterKeys,
    private readonly index: MasterIndex,
    private readonly packSize: number,
  ) {}

  /** Store one chunk (if new); returns its id. Awaiting it applies backpressure from pack writes. */
  async add(data: Buffer): Promise<Buffer> {
    const id = hmac(this.keys.id, data);
    const key = id.toString('hex');
    if (this.index.has(key) || this.pendingIds.has(key)) {
      this.stats.chunksDuplicate++;
      return id;
    }
    const { payload, compression } = maybeCompress(data);
    const sealed = seal(this.keys.encryption, payload, BLOB_AAD);
    this.pendingIds.add(key);
    this.pending.push({ id, type: BlobType.Data, compression, rawLength: data.length, sealed });
    this.pendingBytes += sealed.length;
    this.stats.chunksNew++;
    this.stats.bytesNew += data.length;
    if (this.pendingBytes >= this.packSize) await this.flushPack();
    return id;
  }

  /** Seal the current pack and write it; at most one write runs while the next pack fills. */
  private async flushPack(): Promise<void> {
    if (this.pending.length === 0) return;
    const items = this.pending;
    this.pending = [];
    this.pendingBytes = 0;
    await this.flushing;
    const { bytes, id, blobs } = assemblePack(this.keys, items);
    this.inFlight = bytes.length;
    this.flushing = this.storage.write('data', id, bytes).then(() => {
      this.inFlight = 0;
      const rec = { id, blobs };
      this.written.push(rec);
      this.index.add(rec);
      for (const it of items) this.pendingIds.delete(it.id.toString('hex'));
      this.stats.bytesStored += bytes.length;
      this.stats.packsWritten++;
    });
    // Surface a write error at the next await of add() or finish(), not as an unhandled rejection.
    this.flushing.catch(() => undefined);
  }

  /** Packs found without an index (an earlier run died): list them in this run's index file. */
  adopt(packIds: string[]): void {
    for (const id of packIds) {
      const rec = this.index.packs.get(id);
      if (rec) this.written.push(rec);
    }
  }

  /** Write the last pack, then one index file listing every pack this store wrote. */
  async finish(): Promise<string | undefined> {
    await this.flushPack();
    await this.flushing;
    if (this.written.length === 0) return undefined;
    return writeIndexFile(this.storage, this.keys, this.written);
  }

  /** Bytes sealed but not yet written (for "how much more was needed" when the drive fills). */
  get unwrittenBytes(): number {
    return this.pendingBytes + this.inFlight;
  }
}

// PackWriter: fills packs with sealed blobs and writes each one (temp, fsync, rename) while the next one fills.
// At most one write is in flight, so memory stays at about two packs. Packs are durable before anyone is told.
import type { MasterKeys } from '../vault/keys.js';
import { assemblePack } from '../vault/pack.js';
import type { PackRecord } from '../vault/index-file.js';
import type { Storage } from '../vault/storage.js';

export interface SealedBlob {
  id: Buffer;
  type: number;
  compression: number;
  rawLength: number;
  sealed: Buffer;
}

/** Packs being written at once per writer: the disk stays busy while the next pack fills. */
const MAX_WRITES = 1;

export class PackWriter {
  private items: SealedBlob[] = [];
  private bytes = 0;
  private readonly writing = new Set<Promise<void>>();
  private writingBytes = 0;
  private failure: unknown;

  constructor(
    private readonly storage: Storage,
    private readonly keys: MasterKeys,
    private readonly packSize: number,
    private readonly onWritten: (pack: PackRecord, size: number) => void,
  ) {}

  /** Sealed bytes not yet durable (the pack filling plus the one being written). */
  get pendingBytes(): number {
    return this.bytes + this.writingBytes;
  }

  async add(blob: SealedBlob): Promise<void> {
    this.items.push(blob);
    this.bytes += blob.sealed.length;
    if (this.bytes >= this.packSize) await this.flush();
  }

  /** Start writing the current pack. With MAX_WRITES already in flight, waits for one; rethrows a write error. */
  async flush(): Promise<void> {
    if (this.failure) throw this.failure;
    if (this.items.length === 0) return;
    const items = this.items;
    this.items = [];
    this.bytes = 0;
    while (this.writing.size >= MAX_WRITES) await Promise.race(this.writing);
    if (this.failure) throw this.failure;
    const { parts, size, id, blobs } = assemblePack(this.keys, items);
    this.writingBytes += size;
    const w: Promise<void> = this.storage.write('data', id, parts).then(
      () => {
        this.writing.delete(w);
        this.writingBytes -= size;
        this.onWritten({ id, blobs }, size);
      },
      (err: unknown) => {
        this.writing.delete(w);
        this.failure ??= err;
      },
    );
    this.writing.add(w);
  }

  async finish(): Promise<void> {
    await this.flush();
    while (this.writing.size > 0) await Promise.race(this.writing);
    if (this.failure) throw this.failure;
  }
}


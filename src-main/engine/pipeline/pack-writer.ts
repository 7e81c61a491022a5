// PackWriter: streams sealed blobs into a pack file as they come (temporary name, positional writes); at the pack
// size it appends the sealed header, and fsyncs and links the file into place while the next pack fills. The pack's
// name is the SHA-256 of its tail (format 2), or of all its bytes, hashed on the way (format 1).
// Blobs are copied into the file's write blocks as they come (TempFile), so memory stays at a few MiB of blocks
// whatever the pack size. At most one pack is being made durable at a time. Packs are durable before anyone is told.
import { createHash, type Hash } from 'node:crypto';
import type { LazySealed } from '../vault/crypto.js';
import type { MasterKeys } from '../vault/keys.js';
import { BlobType, MEMBER_ID_BYTES, packTail, type PackBlob, type PackNaming } from '../vault/pack.js';
import type { PackRecord } from '../vault/index-file.js';
import { WriteBlocks, type LocalStorage, type TempFile } from '../vault/storage.js';

export interface SealedBlob {
  id: Buffer;
  type: number;
  compression: number;
  rawLength: number;
  /** The sealed blob, whole or in pieces to be written one after the other (sealParts), or made as it is written
   * (sealLazily). */
  sealed: Buffer | readonly Buffer[] | LazySealed;
}

/** Several small chunks compressed and sealed as one blob (format 2): the members, in order, make its plaintext;
 * with `ids` (format 4, an IdGroup), each member's id comes before its bytes there (groupPlaintext). */
export interface SealedGroup {
  members: Array<{ id: Buffer; rawLength: number }>;
  ids: boolean;
  compression: number;
  sealed: Buffer | readonly Buffer[];
}


/** Bytes appended between two calls of afterSettle. */
const SETTLE_EVERY = 4 * 1024 * 1024;
/** Blocks of 1 MiB each writer stages its packs in: up to three written while one fills. Six took 4 MB more at the
 * first backup's peak (202 against 198 MB, four runs each alternating) for no measurable speed. */
const BLOCKS = 4;
/** Packs being made durable (fsync, link) at once per writer: the disk stays busy while the next pack fills. */
const MAX_COMMITS = 1;

interface OpenPack {
  file: Promise<TempFile>;
  hash: Hash;
  blobs: PackBlob[];
  offset: number;
}

/** Mark a promise as handled (its failure is collected later by settle/flush), so an early rejection does not
 * count as unhandled and end the worker. Returns the same promise. */
function handled<T>(p: Promise<T>): Promise<T> {
  p.catch(() => undefined);
  return p;
}

/** The pieces, each added to the hash as it is taken (format 1 names a pack by the SHA-256 of all its bytes). */
function* hashed(parts: Iterable<Buffer>, hash: Hash): Generator<Buffer> {
  for (const part of parts) {
    hash.update(part);
    yield part;
  }
}

export class PackWriter {
  private cur: OpenPack | undefined;
  private readonly committing = new Set<Promise<void>>();
  private failure: unknown;
  private readonly blocks = new WriteBlocks(BLOCKS);
  private sinceSettle = 0;

  constructor(
    private readonly storage: LocalStorage,
    private readonly keys: MasterKeys,
    private readonly packSize: number,
    private readonly onWritten: (pack: PackRecord, size: number) => void,
    private readonly naming: PackNaming = 'tail',
    /** Called after every SETTLE_EVERY bytes appended: the writer holds none of the sealed buffers given so far. */
    private readonly afterSettle?: () => void,
  ) {}

  async add(blob: SealedBlob | SealedGroup): Promise<void> {
    if (this.failure) throw this.failure;
    const p = (this.cur ??= this.open());
    const sealed = blob.sealed;
    let parts: Iterable<Buffer>;
    let length: number;
    if (Buffer.isBuffer(sealed) || Array.isArray(sealed)) {
      const list: readonly Buffer[] = Buffer.isBuffer(sealed) ? [sealed] : (sealed as readonly Buffer[]);
      parts = list;
      length = list.reduce((a, b) => a + b.length, 0);
    } else {
      ({ pieces: parts, length } = sealed as LazySealed);
    }
    if ('members' in blob) {
      const idBytes = blob.ids ? MEMBER_ID_BYTES : 0;
      const type = blob.ids ? BlobType.IdMember : BlobType.Member;
      const groupRaw = blob.members.reduce((a, m) => a + idBytes + m.rawLength, 0);
      let inner = 0;
      for (const m of blob.members) {
        inner += idBytes;
        p.blobs.push({ id: m.id, type, compression: blob.compression, offset: p.offset, length, rawLength: m.rawLength, inner, groupRaw });
        inner += m.rawLength;
      }
    } else {
      p.blobs.push({ id: blob.id, type: blob.type, compression: blob.compression, offset: p.offset, length, rawLength: blob.rawLength });
    }
    p.offset += length;
    await (await p.file).append(this.naming === 'content' ? hashed(parts, p.hash) : parts);
    this.sinceSettle += length;
    if (this.sinceSettle >= SETTLE_EVERY) {
      this.sinceSettle = 0;
      this.afterSettle?.();
    }
    if (p.offset >= this.packSize) await this.flush();
  }

  private open(): OpenPack {
    return { file: handled(this.storage.createTemp('data', this.blocks)), hash: createHash('sha256'), blobs: [], offset: 0 };
  }

  /** Finish the current pack: append its header and start making it durable. Rethrows a write error. */
  async flush(): Promise<void> {
    if (this.failure) throw this.failure;
    const p = this.cur;
    if (!p) return;
    this.cur = undefined;
    const file = await p.file;
    const tail = packTail(this.keys, p.blobs);
    let size = p.offset;
    for (const t of tail) {
      p.hash.update(t);
      size += t.length;
    }
    const id = p.hash.digest('hex');
    try {
      await file.append(tail);
    } catch (err) {
      await file.abort();
      throw err;
    }
    while (this.committing.size >= MAX_COMMITS) await Promise.race(this.committing);
    if (this.failure) {
      await file.abort();
      throw this.failure;
    }
    const c: Promise<void> = (async () => {
      try {
        await file.commit(id);
      } catch (err) {
        await file.abort();
        throw err;
      }
    })().then(
      () => {
        this.committing.delete(c);
        this.onWritten({ id, blobs: p.blobs }, size);
      },
      (err: unknown) => {
        this.committing.delete(c);
        this.failure ??= err;
      },
    );
    this.committing.add(c);
  }

  async finish(): Promise<void> {
    await this.flush();
    while (this.committing.size > 0) await Promise.race(this.committing);
    if (this.failure) throw this.failure;
  }
}

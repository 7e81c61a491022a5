// The index: which pack holds each chunk, at what offset. Index files are sealed, binary, content-addressed.
// The in-memory MasterIndex merges all of them and, if any is damaged or missing, fills the gap from pack headers.
import { open, sealParts, sha256 } from './crypto.js';
import type { MasterKeys } from './keys.js';
import { IdTable, slotCountFor, type SharedIdTable } from './id-table.js';
import { Ref, inPieces, isMember, REF_WIDTH, decodePackHeader, encodePackHeader, headerContentBytes, readPackHeader, walkPackHeader, type BlobRefs, type PackBlob } from './pack.js';
import type { Storage } from './storage.js';

export const INDEX_AAD = 'clinicvault:index:v1';
const MAGIC = Buffer.from('CVI1');

export interface IndexEntry {
  pack: string;
  blob: PackBlob;
}

export interface PackRecord {
  id: string;
  blobs: PackBlob[];
}

/** A pack the index lists, kept as its header's entries (FORMAT.md) and decoded when asked: ~42 bytes per chunk
 * instead of an object per chunk. */
export class IndexedPack implements PackRecord {
  private bytes: number | undefined;
  constructor(
    readonly id: string,
    readonly header: Buffer,
  ) {}

  /** Its chunks, decoded anew on each call: hold on to the list only while it is needed. */
  get blobs(): PackBlob[] {
    return decodePackHeader(this.header);
  }

  /** Bytes of sealed blobs before its header. */
  get contentBytes(): number {
    return (this.bytes ??= headerContentBytes(this.header));
  }
}

export function encodeIndex(packs: PackRecord[]): Buffer {
  return Buffer.concat(indexParts(packs));
}

/** encodeIndex in pieces (views of the packs' headers, not copies). */
function indexParts(packs: PackRecord[]): Buffer[] {
  const parts: Buffer[] = [MAGIC, u32(packs.length)];
  for (const p of packs) {
    parts.push(Buffer.from(p.id, 'hex'));
    const h = p instanceof IndexedPack ? p.header : encodePackHeader(p.blobs);
    // Reuse the pack-header entry layout: u32 length-prefixed "CVP1" block per pack.
    parts.push(u32(h.length), h);
  }
  return parts;
}

/** Each pack an index file lists, with its header's bytes (views into buf, checked when added to an index). */
function indexedPacks(buf: Buffer): Array<{ id: string; header: Buffer }> {
  if (!buf.subarray(0, 4).equals(MAGIC)) throw new Error('bad index magic');
  const n = buf.readUInt32LE(4);
  let o = 8;
  const packs: Array<{ id: string; header: Buffer }> = [];
  for (let i = 0; i < n; i++) {
    if (o + 36 > buf.length) throw new Error('index is truncated');
    const id = buf.subarray(o, o + 32).toString('hex');
    const len = buf.readUInt32LE(o + 32);
    if (o + 36 + len > buf.length) throw new Error('index is truncated');
    packs.push({ id, header: buf.subarray(o + 36, o + 36 + len) });
    o += 36 + len;
  }
  if (o !== buf.length) throw new Error('trailing bytes in index');
  return packs;
}

function u32(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(n, 0);
  return b;
}

export async function writeIndexFile(storage: Storage, keys: MasterKeys, packs: PackRecord[]): Promise<string> {
  // Sealed and written in pieces: a backup's index (~2 MB per 50,000 database pages) is not copied twice more at the
  // end of the backup, when its memory peaks.
  const sealed = sealParts(keys.encryption, indexParts(packs), INDEX_AAD);
  const name = sha256(sealed).toString('hex');
  await storage.write('index', name, sealed);
  return name;
}

export interface IndexProblem {
  file: string;
  kind: 'index' | 'pack';
  message: string;
}

/** Where each chunk is, for every pack the vault's index files list: the first pack listed for a chunk is the one
 * read. Chunks are kept in flat columns keyed by an IdTable; entry objects are made when asked for. */
export class MasterIndex {
  readonly packs = new Map<string, IndexedPack>();
  readonly problems: IndexProblem[] = [];
  /** Packs present in storage that no index file lists (a backup died before writing its index). */
  readonly recoveredPacks: string[] = [];
  /** The index files it was read from, when it was read from all of them without a problem (the local cache's key). */
  files: string[] | undefined;
  /** Read from the local cache (index-cache.ts) instead of the index files. */
  fromCache = false;
  private readonly packIds: string[] = [];
  private table = new IdTable(4096);
  private cols = new Columns(4096);

  /** List a pack (its header's entries, checked here); a pack listed already is kept as it was. */
  addPack(id: string, header: Buffer): IndexedPack {
    const known = this.packs.get(id);
    if (known) return known;
    walkPackHeader(header); // the whole header is checked before any of it is listed
    const rec = new IndexedPack(id, header);
    const packNo = this.packIds.push(id) - 1;
    this.packs.set(id, rec);
    walkPackHeader(header, (type, compression, offset, length, rawLength, idAt, inner, groupRaw) => {
      const e = this.table.add(header, idAt);
      if (e < 0) return;
      if (e >= this.cols.capacity) this.cols = this.cols.grown();
      const c = this.cols;
      c.pack[e] = packNo;
      c.type[e] = type;
      c.compression[e] = compression;
      c.offset[e] = offset;
      c.length[e] = length;
      c.rawLength[e] = rawLength;
      c.inner[e] = inner;
      c.groupRaw[e] = groupRaw;
    });
    return rec;
  }

  add(pack: PackRecord): IndexedPack {
    return this.addPack(pack.id, pack instanceof IndexedPack ? pack.header : encodePackHeader(pack.blobs));
  }

  /** How many distinct chunks. */
  get size(): number {
    return this.table.size;
  }

  has(id: Buffer | string): boolean {
    return this.entryOf(id) >= 0;
  }

  get(id: Buffer | string): IndexEntry | undefined {
    const e = this.entryOf(id);
    return e < 0 ? undefined : this.entryAt(e);
  }

  /** The pack that holds the chunk `id[at..at+32]`, without making its entry (verify asks this of every chunk of
   * every backup, straight from each file's list of ids). */
  packOf(id: Buffer, at = 0): string | undefined {
    const e = at >= 0 && at + 32 <= id.length ? this.table.find(id, at) : -1;
    return e < 0 ? undefined : this.packIds[this.cols.pack[e]!];
  }

  /** The entry number of the chunk `id[at..at+32]` (for rawLength and refs), or -1 when no pack holds it. */
  locate(id: Buffer, at: number): number {
    return at >= 0 && at + 32 <= id.length ? this.table.find(id, at) : -1;
  }

  /** Entry e's chunk and where the index keeps it (entries are numbered 0 .. size-1). */
  entryAt(e: number): IndexEntry {
    return { pack: this.packIds[this.cols.pack[e]!]!, blob: this.cols.blob(e, this.table.id(e)) };
  }

  /** The plaintext length of entry e. */
  rawLength(e: number): number {
    return this.cols.rawLength[e]!;
  }

  /** Whether entry e's chunk is stored as it is (not compressed, not in a group: inPieces). */
  storedAsIs(e: number): boolean {
    return inPieces({ type: this.cols.type[e]!, compression: this.cols.compression[e]! });
  }

  /** Entries entries[from..to) as flat refs for a worker, without an object per chunk. */
  refs(entries: Int32Array, from: number, to: number): BlobRefs {
    const n = to - from;
    const ids = new Uint8Array(n * 32);
    const meta = new Uint32Array(n * REF_WIDTH);
    const packOf = new Uint32Array(n);
    const packs: string[] = [];
    const local = new Map<number, number>();
    const c = this.cols;
    const all = this.table.all();
    for (let i = 0; i < n; i++) {
      const e = entries[from + i]!;
      ids.set(all.subarray(e * 32, e * 32 + 32), i * 32);
      const k = i * REF_WIDTH;
      meta[k + Ref.type] = c.type[e]!;
      meta[k + Ref.compression] = c.compression[e]!;
      meta[k + Ref.offset] = c.offset[e]!;
      meta[k + Ref.length] = c.length[e]!;
      meta[k + Ref.rawLength] = c.rawLength[e]!;
      meta[k + Ref.inner] = c.inner[e]!;
      meta[k + Ref.groupRaw] = c.groupRaw[e]!;
      const p = c.pack[e]!;
      let q = local.get(p);
      if (q === undefined) local.set(p, (q = packs.push(this.packIds[p]!) - 1));
      packOf[i] = q;
    }
    return { ids, meta, packs, packOf };
  }

  /** Every chunk id so far, as a table in shared memory for engine workers (IdTable.view). */
  sharedIds(): SharedIdTable {
    return this.table.toShared();
  }

  private entryOf(id: Buffer | string): number {
    const buf = typeof id === 'string' ? Buffer.from(id, 'hex') : id;
    return buf.length === 32 ? this.table.find(buf) : -1;
  }

  /** `cache`: the local cache (index-cache.ts), written whenever the index files were read without a problem. With
   * `checkFiles`, it is used only once every index file is proved intact (its bytes hash to its name, and it
   * decrypts); otherwise the files are read as without a cache, and a damaged one is reported as always. */
  static async load(storage: Storage, keys: MasterKeys, opts: { recoverOrphans?: boolean; cache?: IndexCacheStore; checkFiles?: boolean } = {}): Promise<MasterIndex> {
    const files = await storage.list('index');
    let idx = opts.cache && files.length > 0 ? await opts.cache.read(keys, files) : undefined;
    if (idx && opts.checkFiles && !(await allIntact(storage, keys, files))) idx = undefined;
    if (!idx) {
      idx = new MasterIndex();
      for (const name of files) {
        try {
          for (const p of indexedPacks(await openIndexFile(storage, keys, name))) idx.addPack(p.id, p.header);
        } catch (err) {
          idx.problems.push({ file: name, kind: 'index', message: `index file ${name.slice(0, 12)} is damaged: ${(err as Error).message}` });
        }
      }
      if (idx.problems.length === 0) {
        idx.files = files;
        // A cache that cannot be written is no cache: the next command reads the index files again.
        if (opts.cache && files.length > 0) await opts.cache.write(keys, idx, files).catch(() => undefined);
      }
    }
    // Packs no index lists: after a damaged index file, or a backup that died before writing its index.
    // Their headers are read so their chunks stay usable (and are not uploaded twice).
    if (opts.recoverOrphans || idx.problems.length > 0) {
      for (const packId of await storage.list('data')) {
        if (idx.packs.has(packId)) continue;
        try {
          idx.add({ id: packId, blobs: await readPackHeader(storage, keys, packId) });
          idx.recoveredPacks.push(packId);
        } catch (err) {
          idx.problems.push({ file: packId, kind: 'pack', message: `pack ${packId.slice(0, 12)} is damaged: ${(err as Error).message}` });
        }
      }
    }
    return idx;
  }

  /** Its content for the local cache (index-cache.ts), with the index files it stands for: their names, its packs'
   * headers, its id table and its columns as they are in memory (this machine's byte order). */
  cacheParts(files: readonly string[]): Buffer[] {
    const raw = this.table.raw();
    const parts: Buffer[] = [CACHE_MAGIC, u32(files.length), ...files.map((f) => Buffer.from(f, 'hex')), u32(this.packIds.length)];
    for (const id of this.packIds) {
      const header = this.packs.get(id)!.header;
      parts.push(Buffer.from(id, 'hex'), u32(header.length), header);
    }
    parts.push(u32(raw.count), u32(raw.capacity), u32(this.cols.capacity), raw.ids, bytesOf(raw.slots));
    for (const k of COLUMN_NAMES) parts.push(bytesOf(this.cols[k].subarray(0, raw.count)));
    return parts;
  }

  /** An index made again from cacheParts' bytes (authenticated by the caller); its `files` are the index files it
   * stands for. Throws if they do not add up. */
  static fromCache(buf: Buffer): MasterIndex {
    let o = 0;
    const take = (n: number): Buffer => {
      if (n < 0 || o + n > buf.length) throw new Error('index cache is truncated');
      o += n;
      return buf.subarray(o - n, o);
    };
    const num = (): number => take(4).readUInt32LE(0);
    if (!take(4).equals(CACHE_MAGIC)) throw new Error('bad index cache magic');
    const files = Array.from({ length: num() }, () => take(32).toString('hex'));
    const idx = new MasterIndex();
    const packCount = num();
    const headers: Array<{ id: string; at: number; length: number }> = [];
    const start = o;
    for (let i = 0; i < packCount; i++) {
      const id = take(32).toString('hex');
      const length = num();
      headers.push({ id, at: o - start, length });
      take(length);
    }
    // The headers in a buffer of their own: the rest of the cache's bytes are copied out below and go.
    const block = Buffer.from(buf.subarray(start, o));
    for (const h of headers) {
      const rec = new IndexedPack(h.id, block.subarray(h.at, h.at + h.length));
      idx.packIds.push(h.id);
      idx.packs.set(h.id, rec);
    }
    const count = num();
    const capacity = num();
    const colCapacity = num();
    if (colCapacity < count) throw new Error('index cache columns do not add up');
    const ids = take(count * 32);
    const slotBytes = take(slotCountFor(capacity) * 4);
    const slots = new Int32Array(slotBytes.length / 4);
    bytesOf(slots).set(slotBytes);
    idx.table = IdTable.fromRaw(ids, slots, count, capacity);
    idx.cols = new Columns(colCapacity);
    for (const k of COLUMN_NAMES) {
      const col = idx.cols[k];
      bytesOf(col).set(take(count * col.BYTES_PER_ELEMENT), 0);
    }
    if (o !== buf.length) throw new Error('trailing bytes in index cache');
    idx.files = files;
    idx.fromCache = true;
    return idx;
  }
}

/** Whether every index file is as written: named by the SHA-256 of its bytes, which decrypt (their content is what
 * a cache made from these names holds). */
async function allIntact(storage: Storage, keys: MasterKeys, files: readonly string[]): Promise<boolean> {
  for (const name of files) {
    try {
      await openIndexFile(storage, keys, name);
    } catch {
      return false;
    }
  }
  return true;
}

/** An index file's plaintext; throws if its bytes do not hash to its name or do not decrypt. */
async function openIndexFile(storage: Storage, keys: MasterKeys, name: string): Promise<Buffer> {
  const sealed = await storage.read('index', name);
  if (sha256(sealed).toString('hex') !== name) throw new Error('file content does not match its name');
  return open(keys.encryption, sealed, INDEX_AAD);
}

/** Where the local cache of a vault's index is kept (index-cache.ts). */
export interface IndexCacheStore {
  read(keys: MasterKeys, files: readonly string[]): Promise<MasterIndex | undefined>;
  write(keys: MasterKeys, index: MasterIndex, files: readonly string[]): Promise<void>;
}

const CACHE_MAGIC = Buffer.from('CVX1');
const COLUMN_NAMES = ['pack', 'type', 'compression', 'offset', 'length', 'rawLength', 'inner', 'groupRaw'] as const;

function bytesOf(a: Uint8Array | Uint32Array | Int32Array): Buffer {
  return Buffer.from(a.buffer, a.byteOffset, a.byteLength);
}

/** The fields of each chunk's PackBlob, one typed array per field. */
class Columns {
  readonly pack: Uint32Array;
  readonly type: Uint8Array;
  readonly compression: Uint8Array;
  readonly offset: Uint32Array;
  readonly length: Uint32Array;
  readonly rawLength: Uint32Array;
  readonly inner: Uint32Array;
  readonly groupRaw: Uint32Array;

  constructor(readonly capacity: number) {
    this.pack = new Uint32Array(capacity);
    this.type = new Uint8Array(capacity);
    this.compression = new Uint8Array(capacity);
    this.offset = new Uint32Array(capacity);
    this.length = new Uint32Array(capacity);
    this.rawLength = new Uint32Array(capacity);
    this.inner = new Uint32Array(capacity);
    this.groupRaw = new Uint32Array(capacity);
  }

  grown(): Columns {
    const c = new Columns(this.capacity * 2);
    for (const k of ['pack', 'type', 'compression', 'offset', 'length', 'rawLength', 'inner', 'groupRaw'] as const) c[k].set(this[k]);
    return c;
  }

  blob(e: number, id: Buffer): PackBlob {
    const b: PackBlob = { id, type: this.type[e]!, compression: this.compression[e]!, offset: this.offset[e]!, length: this.length[e]!, rawLength: this.rawLength[e]! };
    if (isMember(b)) {
      b.inner = this.inner[e]!;
      b.groupRaw = this.groupRaw[e]!;
    }
    return b;
  }
}

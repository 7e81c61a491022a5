// Packs: many sealed blobs in one file, followed by a sealed header that lists them, so the index can always be
// rebuilt from the packs alone. A blob holds one chunk, or (format 2) a group of small chunks (database pages, dump
// pieces) compressed and sealed together, each still named and deduplicated on its own. A pack is named by the
// SHA-256 of its bytes (format 1) or of its tail, the sealed header and its length (format 2; FORMAT.md). Format 3
// seals each data blob with its chunk id in the aad (dataBlobAad). Format 4 writes each group member's id before its
// bytes, inside the group (IdGroup), so that a reader checks a member by its id instead of hashing it (decision 0035).
import { createHmac } from 'node:crypto';
import { GcmOpening, hmac, NONCE_BYTES, open, seal, sha256, TAG_BYTES, type Aad } from './crypto.js';
import { Compression, decompressChunk } from './compress.js';
import type { MasterKeys } from './keys.js';
import type { Storage } from './storage.js';

export const BLOB_AAD = 'clinicvault:blob:v1';
/** Format 3: a data blob's aad is this followed by its chunk's 32-byte id (dataBlobAad). */
const BOUND_BLOB_AAD = Buffer.from('clinicvault:blob:v2', 'utf8');
export const GROUP_AAD = 'clinicvault:group:v1';
/** Format 4: the aad of a group whose members' ids are in its plaintext (IdGroup). */
export const ID_GROUP_AAD = 'clinicvault:group:v2';
/** Bytes of a member's id before its bytes in an IdGroup's plaintext. */
export const MEMBER_ID_BYTES = 32;
export const HEADER_AAD = 'clinicvault:pack-header:v1';
const HEADER_MAGIC = Buffer.from('CVP1');
const ENTRY_BYTES = 42;
const NO_ID = Buffer.alloc(32);

/** How packs are named: 'tail' (format 2) or 'content' (format 1: the SHA-256 of the whole file). */
export type PackNaming = 'tail' | 'content';

export const enum BlobType {
  /** A sealed blob holding one chunk. */
  Data = 0,
  /** A sealed blob holding the chunks of the Member entries that follow it, one after the other (on disk only). */
  Group = 1,
  /** A chunk inside the Group entry before it; it takes no bytes of its own in the pack. */
  Member = 2,
  /** Format 4: a sealed blob whose plaintext is, for each IdMember entry that follows it, the member's 32-byte id and
   * then its bytes (on disk only). */
  IdGroup = 3,
  /** A chunk inside the IdGroup entry before it, its id just before its bytes there. */
  IdMember = 4,
}
export { Compression } from './compress.js';

/** One chunk in a pack. For a group member, offset, length and compression are its group's blob, and inner and
 * groupRaw say where in the group's plaintext the chunk lies. Group entries themselves are not listed. */
export interface PackBlob {
  id: Buffer;
  type: number;
  compression: number;
  offset: number;
  length: number;
  rawLength: number;
  inner?: number;
  groupRaw?: number;
}

/** The aad of the data blob holding chunk `id`. Format 3 binds the id (`bound`): the blob's GCM tag then proves that
 * it holds the chunk of that id, as its writer sealed it, so a reader need not hash the plaintext again (decision
 * 0026). Formats 1 and 2 seal every data blob with BLOB_AAD, and only that hash tells one blob from another. */
export function dataBlobAad(id: Uint8Array, bound: boolean): Aad {
  return bound ? Buffer.concat([BOUND_BLOB_AAD, id]) : BLOB_AAD;
}

/** Whether an entry type is a chunk inside a group (Member or IdMember). */
function isMemberType(type: number | undefined): boolean {
  return type === BlobType.Member || type === BlobType.IdMember;
}

/** Whether an entry type is a group blob (Group or IdGroup). */
function isGroupType(type: number | undefined): boolean {
  return type === BlobType.Group || type === BlobType.IdGroup;
}

/** Whether b is a chunk inside a group (Member or IdMember). */
export function isMember(b: Pick<PackBlob, 'type'>): boolean {
  return isMemberType(b.type);
}

/** The bytes a member takes in its group's plaintext: its own, and in an IdGroup its id before them. */
export function memberSpan(b: Pick<PackBlob, 'type' | 'rawLength'>): number {
  return b.type === BlobType.IdMember ? MEMBER_ID_BYTES + b.rawLength : b.rawLength;
}

/** The plaintext of a group made of these members' bytes: one after the other, each after its id in an IdGroup. */
export function groupPlaintext(members: ReadonlyArray<{ id: Buffer; data: Buffer }>, ids: boolean): Buffer {
  return Buffer.concat(ids ? members.flatMap((m) => [m.id, m.data]) : members.map((m) => m.data));
}

/** Whether b is a member of the same group blob as the member before it in a pack's list. */
function sameGroup(prev: PackBlob | undefined, b: PackBlob): boolean {
  return !!prev && isMember(prev) && isMember(b) && prev.offset === b.offset;
}

/** The header layout of a whole pack's list (every member of each group, in order). */
export function encodePackHeader(blobs: PackBlob[]): Buffer {
  let entries = 0;
  blobs.forEach((b, i) => (entries += isMember(b) && !sameGroup(blobs[i - 1], b) ? 2 : 1));
  const out = Buffer.alloc(8 + entries * ENTRY_BYTES);
  HEADER_MAGIC.copy(out, 0);
  out.writeUInt32LE(entries, 4);
  let o = 8;
  const entry = (type: number, compression: number, length: number, rawLength: number, id: Buffer): void => {
    out.writeUInt8(type, o);
    out.writeUInt8(compression, o + 1);
    out.writeUInt32LE(length, o + 2);
    out.writeUInt32LE(rawLength, o + 6);
    id.copy(out, o + 10);
    o += ENTRY_BYTES;
  };
  blobs.forEach((b, i) => {
    if (!isMember(b)) return entry(b.type, b.compression, b.length, b.rawLength, b.id);
    if (!sameGroup(blobs[i - 1], b)) entry(b.type === BlobType.IdMember ? BlobType.IdGroup : BlobType.Group, b.compression, b.length, b.groupRaw!, NO_ID);
    entry(b.type, 0, 0, b.rawLength, b.id);
  });
  return out;
}

export function decodePackHeader(buf: Buffer): PackBlob[] {
  const blobs: PackBlob[] = [];
  walkPackHeader(buf, (type, compression, offset, length, rawLength, idAt, inner, groupRaw) => {
    const b: PackBlob = { id: Buffer.from(buf.subarray(idAt, idAt + 32)), type, compression, offset, length, rawLength };
    if (isMember(b)) {
      b.inner = inner;
      b.groupRaw = groupRaw;
    }
    blobs.push(b);
  });
  return blobs;
}

/** What decodePackHeader reads, entry by entry, without making objects: for each chunk its fields as a PackBlob
 * has them, and where its id is in buf (inner and groupRaw are 0 outside a group; in an IdGroup inner is where the
 * member's bytes start, after its id). Throws on a malformed header,
 * possibly after some chunks were visited; returns how many chunks there are. */
export function walkPackHeader(
  buf: Buffer,
  visit?: (type: number, compression: number, offset: number, length: number, rawLength: number, idAt: number, inner: number, groupRaw: number) => void,
): number {
  if (buf.length < 8 || !buf.subarray(0, 4).equals(HEADER_MAGIC)) throw new Error('bad pack header magic');
  const n = buf.readUInt32LE(4);
  if (buf.length !== 8 + n * ENTRY_BYTES) throw new Error('bad pack header length');
  let chunks = 0;
  let o = 8;
  let offset = 0;
  let group: { ids: boolean; offset: number; length: number; compression: number; raw: number; inner: number; members: number } | undefined;
  const closeGroup = (): void => {
    if (group && (group.members === 0 || group.inner !== group.raw)) throw new Error('bad pack header: a group does not add up');
    group = undefined;
  };
  for (let i = 0; i < n; i++) {
    const type = buf.readUInt8(o);
    const compression = buf.readUInt8(o + 1);
    const length = buf.readUInt32LE(o + 2);
    const rawLength = buf.readUInt32LE(o + 6);
    if (isMemberType(type)) {
      if (!group || length !== 0) throw new Error('bad pack header: a group member outside a group');
      if (group.ids !== (type === BlobType.IdMember)) throw new Error('bad pack header: a member of the wrong kind for its group');
      if (group.ids) group.inner += MEMBER_ID_BYTES;
      visit?.(type, group.compression, group.offset, group.length, rawLength, o + 10, group.inner, group.raw);
      chunks++;
      group.inner += rawLength;
      group.members++;
    } else {
      closeGroup();
      if (isGroupType(type)) group = { ids: type === BlobType.IdGroup, offset, length, compression, raw: rawLength, inner: 0, members: 0 };
      else if (type === BlobType.Data) {
        visit?.(type, compression, offset, length, rawLength, o + 10, 0, 0);
        chunks++;
      } else throw new Error(`bad pack header: unknown blob type ${type}`);
      offset += length;
    }
    o += ENTRY_BYTES;
  }
  closeGroup();
  return chunks;
}

/** Bytes of sealed blobs in a pack with this list (each group counted once): where its header starts. */
export function packContentBytes(blobs: PackBlob[]): number {
  let total = 0;
  blobs.forEach((b, i) => {
    if (!sameGroup(blobs[i - 1], b)) total += b.length;
  });
  return total;
}

/** packContentBytes from a pack header's bytes, already checked (walkPackHeader), without decoding its chunks:
 * verify sums it over every pack before its first read, and decoding the bench vault's 57,500 chunks into objects
 * for it took ~50 ms there. */
export function headerContentBytes(buf: Buffer): number {
  const n = buf.readUInt32LE(4);
  let total = 0;
  for (let i = 0, o = 8; i < n; i++, o += ENTRY_BYTES) if (!isMemberType(buf[o])) total += buf.readUInt32LE(o + 2);
  return total;
}

/** A guess at the work of checking every chunk of a pack with this header (already checked), in bytes-equivalent:
 * each chunk's id is computed over its bytes, a compressed blob is decompressed too, and each chunk costs about as
 * much again as 8 KiB for its own opening and lookups. On the bench vault a pack of photos (18 MB, 6 chunks) took
 * ~32 ms, one of PDFs (25 MB, 65 chunks, 20 MB of it compressed) ~75 ms and one of database pages (52 MB in 12,700
 * pages, all compressed) ~400 ms; this gives 18, 45 and 208 MB. verify reads the costliest packs first. */
export function headerCheckWork(buf: Buffer): number {
  const n = buf.readUInt32LE(4);
  let work = 0;
  for (let i = 0, o = 8; i < n; i++, o += ENTRY_BYTES) {
    const type = buf[o];
    const raw = buf.readUInt32LE(o + 6);
    if (!isGroupType(type)) work += raw + 8192;
    if (!isMemberType(type) && buf[o + 1] !== 0) work += raw;
  }
  return work;
}

/** The stored bytes a chunk accounts for: its blob, or its share of its group's blob. */
export function storedShare(b: PackBlob): number {
  return isMember(b) ? Math.round((b.length * memberSpan(b)) / Math.max(1, b.groupRaw!)) : b.length;
}

/** The tail of a pack: its sealed header and the header's length. */
export function packTail(keys: MasterKeys, blobs: PackBlob[]): Buffer[] {
  const header = seal(keys.encryption, encodePackHeader(blobs), HEADER_AAD);
  const len = Buffer.alloc(4);
  len.writeUInt32LE(header.length, 0);
  return [header, len];
}

export async function readPackHeader(storage: Storage, keys: MasterKeys, packId: string): Promise<PackBlob[]> {
  const size = await storage.size('data', packId);
  if (size < 4) throw new Error('pack too short');
  const tail = await storage.readAt('data', packId, size - 4, 4);
  const hlen = tail.readUInt32LE(0);
  if (hlen + 4 > size) throw new Error('pack header length out of range');
  const sealed = await storage.readAt('data', packId, size - 4 - hlen, hlen);
  return decodePackHeader(open(keys.encryption, sealed, HEADER_AAD, `header of pack ${packId.slice(0, 12)}`));
}

/** Parse a whole pack held in memory (for read-data verification). */
export function parsePack(keys: MasterKeys, bytes: Buffer, packId: string): PackBlob[] {
  if (bytes.length < 4) throw new Error('pack too short');
  const hlen = bytes.readUInt32LE(bytes.length - 4);
  if (hlen + 4 > bytes.length) throw new Error('pack header length out of range');
  const sealed = bytes.subarray(bytes.length - 4 - hlen, bytes.length - 4);
  return decodePackHeader(open(keys.encryption, sealed, HEADER_AAD, `header of pack ${packId.slice(0, 12)}`));
}

export class ChunkIntegrityError extends Error {
  constructor(readonly chunkId: string, readonly packId: string, reason: string) {
    super(`chunk ${chunkId.slice(0, 12)} in pack ${packId.slice(0, 12)}: ${reason}`);
    this.name = 'ChunkIntegrityError';
  }
}

/** Decrypt, decompress and authenticate one chunk from its sealed blob (a member: its whole group's blob). `bound`:
 * the vault's data blobs have their chunk ids in their aad (format 3, dataBlobAad). */
export function openBlob(keys: MasterKeys, sealed: Buffer, blob: PackBlob, packId: string, bound: boolean): Buffer {
  if (isMember(blob)) return memberOf(keys, openGroup(keys, sealed, blob, packId), blob, packId);
  const plain = openSealed(keys, sealed, dataBlobAad(blob.id, bound), blob.compression, blob.rawLength, blob.id, packId, 'the stored bytes were changed');
  // A bound blob's tag has proved its id already.
  return checkId(keys, plain, blob, packId, !bound);
}

/** Open an uncompressed data blob a piece of at most `piece` bytes at a time, giving each piece of plaintext to `take`
 * as it is decrypted, and hashing it while it is still in the CPU's cache; nothing the size of the chunk is made (a
 * whole photo is one chunk since decision 0020). The pieces are not authenticated until this returns: it throws
 * ChunkIntegrityError afterwards if the blob was changed or is not the chunk named, and the caller must then discard
 * what it was given (verify keeps nothing; restore writes into a partial file that is removed). Returns the
 * plaintext's length. */
function openPlainInPieces(keys: MasterKeys, sealed: Buffer, blob: PackBlob, packId: string, piece: number, bound: boolean, take?: (plain: Buffer) => void): number {
  const arriving = new ArrivingBlob(keys, blob, packId, bound);
  const bodyStart = Math.min(NONCE_BYTES, sealed.length);
  const bodyEnd = Math.max(bodyStart, sealed.length - TAG_BYTES);
  arriving.take(sealed.subarray(0, bodyStart));
  // What the caller's take throws (a restore target that is full or fails) is its own error, not the chunk's.
  for (let at = bodyStart; at < bodyEnd; at += piece) {
    const plain = arriving.take(sealed.subarray(at, Math.min(bodyEnd, at + piece)));
    take?.(plain);
  }
  arriving.take(sealed.subarray(bodyEnd));
  arriving.end();
  return blob.rawLength;
}

/** Whether a blob can be opened in pieces (openPlainInPieces, ArrivingBlob): a chunk stored as it is, uncompressed
 * and not in a group. */
export function inPieces(blob: Pick<PackBlob, 'type' | 'compression'>): boolean {
  return !isMember(blob) && blob.compression === Compression.None;
}

/** A chunk stored as it is (inPieces) opened from its sealed bytes as they are read, in pieces of any size, so that
 * nothing the size of the chunk is read or made at once. The plaintext take returns is not authenticated until end
 * returns: the caller must discard it if end throws (ChunkIntegrityError, as openPlainInPieces). */
export class ArrivingBlob {
  /** Sealed bytes taken so far. */
  private at = 0;
  private readonly nonce = Buffer.alloc(NONCE_BYTES);
  private readonly tag = Buffer.alloc(TAG_BYTES);
  private opening: GcmOpening | undefined;
  private readonly h: ReturnType<typeof createHmac> | undefined;
  private plainBytes = 0;

  constructor(
    private readonly keys: MasterKeys,
    private readonly blob: PackBlob,
    private readonly packId: string,
    private readonly bound: boolean,
  ) {
    this.h = bound ? undefined : createHmac('sha256', keys.id);
  }

  /** Take the next sealed bytes (they follow those taken before); returns the plaintext they hold, maybe none. */
  take(part: Buffer): Buffer {
    const len = this.blob.length;
    const bodyEnd = len - TAG_BYTES;
    if (this.at + part.length > len) throw new Error('internal error: more bytes than the chunk has');
    let off = 0;
    if (this.at < NONCE_BYTES) {
      const n = Math.min(NONCE_BYTES - this.at, part.length);
      part.copy(this.nonce, this.at, 0, n);
      this.at += n;
      off = n;
      if (this.at === NONCE_BYTES && len >= NONCE_BYTES + TAG_BYTES) this.opening = new GcmOpening(this.keys.encryption, this.nonce, dataBlobAad(this.blob.id, this.bound));
    }
    let plain: Buffer = EMPTY;
    if (off < part.length && this.at < bodyEnd && this.opening) {
      const n = Math.min(bodyEnd - this.at, part.length - off);
      plain = this.opening.update(part.subarray(off, off + n));
      this.h?.update(plain);
      this.plainBytes += plain.length;
      this.at += n;
      off += n;
    }
    if (off < part.length) {
      const n = part.length - off;
      part.copy(this.tag, this.at - bodyEnd, off, off + n);
      this.at += n;
    }
    return plain;
  }

  /** Once every sealed byte was taken: check the tag, the length and (format 1 and 2) the id. */
  end(): void {
    const id = (): string => this.blob.id.toString('hex');
    if (this.at !== this.blob.length || !this.opening) throw new ChunkIntegrityError(id(), this.packId, 'authentication failed (the stored bytes were changed)');
    try {
      this.opening.finish(this.tag);
    } catch {
      throw new ChunkIntegrityError(id(), this.packId, 'authentication failed (the stored bytes were changed)');
    }
    if (this.plainBytes !== this.blob.rawLength) throw new ChunkIntegrityError(id(), this.packId, 'content does not have its length');
    if (this.h && !this.h.digest().equals(this.blob.id)) throw new ChunkIntegrityError(id(), this.packId, 'content does not match its id');
  }
}
const EMPTY = Buffer.alloc(0);

const CHECK_PIECE = 256 * 1024;

/** Decrypt and decompress a data or group blob; a failure is reported against chunk `id`. */
function openSealed(keys: MasterKeys, sealed: Buffer, aad: Aad, compression: number, rawLength: number, id: Buffer, packId: string, changed: string): Buffer {
  let plain: Buffer;
  try {
    plain = open(keys.encryption, sealed, aad);
  } catch {
    throw new ChunkIntegrityError(id.toString('hex'), packId, `authentication failed (${changed})`);
  }
  try {
    return decompressChunk(plain, compression, rawLength);
  } catch (err) {
    throw new ChunkIntegrityError(id.toString('hex'), packId, /unknown compression/.test((err as Error).message) ? (err as Error).message : 'cannot be decompressed');
  }
}

/** Check a chunk's length and, with `hash`, that its HMAC is its id. The chunk's id in hex is made only for an
 * error: a database restore opens ~50,000 pages, and a hex string for each cost ~50 ms of CPU and as much again in
 * garbage collection. */
function checkId(keys: MasterKeys, plain: Buffer, blob: PackBlob, packId: string, hash = true): Buffer {
  if (plain.length !== blob.rawLength) throw new ChunkIntegrityError(blob.id.toString('hex'), packId, 'content does not have its length');
  if (hash && !hmac(keys.id, plain).equals(blob.id)) throw new ChunkIntegrityError(blob.id.toString('hex'), packId, 'content does not match its id');
  return plain;
}

/** The plaintext of a member's whole group (every member, one after the other; in an IdGroup each after its id). */
function openGroup(keys: MasterKeys, sealed: Buffer, member: PackBlob, packId: string): Buffer {
  const aad = member.type === BlobType.IdMember ? ID_GROUP_AAD : GROUP_AAD;
  const plain = openSealed(keys, sealed, aad, member.compression, member.groupRaw!, member.id, packId, 'the stored bytes of its group were changed');
  if (plain.length !== member.groupRaw) throw new ChunkIntegrityError(member.id.toString('hex'), packId, 'its group has the wrong size');
  return plain;
}

/** A member's bytes in its group's plaintext, checked to be that chunk. In an IdGroup (format 4) the id written
 * before them must be the member's: the group's tag has proved them as their writer sealed them, so they are not
 * hashed again (decision 0035). In a Group they are hashed. */
function memberOf(keys: MasterKeys, group: Buffer, member: PackBlob, packId: string): Buffer {
  const inner = member.inner!;
  const plain = group.subarray(inner, inner + member.rawLength);
  if (member.type !== BlobType.IdMember) return checkId(keys, plain, member, packId);
  if (inner < MEMBER_ID_BYTES || group.compare(member.id, 0, MEMBER_ID_BYTES, inner - MEMBER_ID_BYTES, inner) !== 0) {
    throw new ChunkIntegrityError(member.id.toString('hex'), packId, 'its group holds another chunk in its place');
  }
  return checkId(keys, plain, member, packId, false);
}

/** Opens chunks one after the other, keeping the last few groups it opened: members of a group read one after the
 * other, or interleaved with a few other groups (a database's pages from several backups, in file order), are
 * decrypted and decompressed once. */
export class BlobOpener {
  private readonly groups = new Map<string, Buffer>();
  /** Bytes of the buffers made since takeMade() was last called: decrypted and decompressed bytes of each blob
   * opened. A group opened for one of its 4 KiB pages makes ~350 KB; counting only the pages returned, a restore
   * that took a few pages from each of many groups left tens of MB of them for V8's heuristics (see takeMade). */
  private made = 0;
  /** The group opened or found last: consecutive members of one group skip the map and its string key. */
  private lastPack = '';
  private lastOffset = -1;
  private last: Buffer | undefined;

  /** `bound`: the vault's data blobs have their chunk ids in their aad (format 3, dataBlobAad). */
  constructor(
    private readonly keys: MasterKeys,
    private readonly bound: boolean,
    private readonly keep = 4,
  ) {}

  /** Check a chunk without keeping its plaintext (verify); returns its length. */
  check(sealed: Buffer, blob: PackBlob, packId: string): number {
    if (!inPieces(blob)) return this.open(sealed, blob, packId).length;
    this.made += sealed.length;
    return openPlainInPieces(this.keys, sealed, blob, packId, CHECK_PIECE, this.bound);
  }

  /** Open a chunk and give its plaintext to `take`: in pieces of at most `piece` bytes if it is an uncompressed data
   * blob larger than that (unauthenticated until this returns, see openPlainInPieces), else whole. */
  openTo(sealed: Buffer, blob: PackBlob, packId: string, piece: number, take: (plain: Buffer) => void): void {
    if (!inPieces(blob) || blob.rawLength <= piece) {
      take(this.open(sealed, blob, packId));
      return;
    }
    this.made += sealed.length;
    openPlainInPieces(this.keys, sealed, blob, packId, piece, this.bound, take);
  }

  open(sealed: Buffer, blob: PackBlob, packId: string): Buffer {
    if (!isMember(blob)) {
      this.made += sealed.length + (blob.compression === Compression.None ? 0 : blob.rawLength);
      return openBlob(this.keys, sealed, blob, packId, this.bound);
    }
    if (this.last && blob.offset === this.lastOffset && packId === this.lastPack) return memberOf(this.keys, this.last, blob, packId);
    const at = `${packId}:${blob.offset}`;
    let group = this.groups.get(at);
    if (group) {
      this.groups.delete(at);
    } else {
      this.made += sealed.length + (blob.compression === Compression.None ? 0 : blob.groupRaw!);
      group = openGroup(this.keys, sealed, blob, packId);
      if (this.groups.size >= this.keep) this.groups.delete(this.groups.keys().next().value!);
    }
    this.groups.set(at, group);
    this.last = group;
    this.lastPack = packId;
    this.lastOffset = blob.offset;
    return memberOf(this.keys, group, blob, packId);
  }

  /** The bytes of buffers made since the last call (and start counting again): what is garbage once the chunks
   * opened are written or checked, for the caller to collect on. */
  takeMade(): number {
    const n = this.made;
    this.made = 0;
    return n;
  }
}

/** A list of chunks cut into runs that each read one stretch of one pack: blobs that follow each other, and chunks
 * that share the blob before them (members of one group, a chunk repeated), no longer than maxBytes unless one blob
 * alone is (a run used to end only once it had passed maxBytes, by up to a whole photo: 9 MiB read buffers).
 * [from, to) index the list; [start, end) are pack offsets. */
export function blobRuns(list: Array<{ pack: string; blob: PackBlob }>, maxBytes: number): Array<{ pack: string; start: number; end: number; from: number; to: number }> {
  return runsOf(list.length, (i) => list[i]!.pack, (i) => list[i]!.blob.offset, (i) => list[i]!.blob.length, maxBytes).map((r) => ({ ...r, pack: list[r.from]!.pack }));
}

/** blobRuns over any list, told each item's pack (anything compared with ===), offset and length. */
export function runsOf(
  count: number,
  pack: (i: number) => unknown,
  offset: (i: number) => number,
  length: (i: number) => number,
  maxBytes: number,
): Array<{ start: number; end: number; from: number; to: number }> {
  const runs = [];
  let i = 0;
  while (i < count) {
    const p = pack(i);
    const start = offset(i);
    let end = start + length(i);
    let j = i + 1;
    while (j < count) {
      if (pack(j) !== p) break;
      const o = offset(j);
      if (o !== offset(j - 1)) {
        if (o !== end || end + length(j) - start > maxBytes) break;
        end += length(j);
      }
      j++;
    }
    runs.push({ start, end, from: i, to: j });
    i = j;
  }
  return runs;
}

/** Chunks' places in packs, for a worker, in flat arrays (a 200 MB database is ~51,000 chunks: as objects, and
 * with a pack name each, they had made the main thread's heap grow with the database). Chunk i's id is
 * ids[32i..32i+32], its fields are meta[7i..7i+7] in Ref's order, its pack is packs[packOf[i]]. Made by
 * MasterIndex.refs. */
export interface BlobRefs {
  ids: Uint8Array;
  meta: Uint32Array;
  packs: string[];
  packOf: Uint32Array;
}

/** Whether every chunk in refs is stored as it is (inPieces: a photo's, not compressed, not in a group). */
export function allStoredAsIs(refs: Pick<BlobRefs, 'meta' | 'packOf'>): boolean {
  const meta = refs.meta;
  for (let i = 0; i < refs.packOf.length; i++) {
    if (!inPieces({ type: meta[i * REF_WIDTH + Ref.type]!, compression: meta[i * REF_WIDTH + Ref.compression]! })) return false;
  }
  return true;
}

/** Where each of a chunk's REF_WIDTH numbers sits in BlobRefs.meta. */
export const Ref = { type: 0, compression: 1, offset: 2, length: 3, rawLength: 4, inner: 5, groupRaw: 6 } as const;
export const REF_WIDTH = 7;

/** Chunk i of refs as a PackBlob (its id a view into refs.ids). */
export function blobRef(refs: BlobRefs, i: number): PackBlob {
  const m = refs.meta;
  const k = i * REF_WIDTH;
  const b: PackBlob = {
    id: Buffer.from(refs.ids.buffer, refs.ids.byteOffset + i * 32, 32),
    type: m[k + Ref.type]!,
    compression: m[k + Ref.compression]!,
    offset: m[k + Ref.offset]!,
    length: m[k + Ref.length]!,
    rawLength: m[k + Ref.rawLength]!,
  };
  if (isMember(b)) {
    b.inner = m[k + Ref.inner]!;
    b.groupRaw = m[k + Ref.groupRaw]!;
  }
  return b;
}

/** Whether a pack's bytes carry its name: the SHA-256 of its tail (format 2) with the blobs filling exactly the
 * space before the header, or the SHA-256 of the whole file (format 1). */
export function packNameMatches(bytes: Buffer, packId: string, blobs: PackBlob[] | undefined): boolean {
  if (bytes.length >= 4) {
    const tailStart = bytes.length - 4 - bytes.readUInt32LE(bytes.length - 4);
    if (tailStart >= 0 && packTailMatches(bytes.subarray(tailStart), bytes.length, packId, blobs)) return true;
  }
  return sha256(bytes).toString('hex') === packId;
}

/** Whether a format-2 pack carries its name, from its tail alone (the sealed header and its length, the last bytes
 * of a pack of `size` bytes): the SHA-256 of the tail, with the blobs its header lists filling exactly the space
 * before it. False says only that the whole file must be hashed (format 1, or damage). */
export function packTailMatches(tail: Buffer, size: number, packId: string, blobs: PackBlob[] | undefined): boolean {
  return blobs !== undefined && tail.length >= 4 && size - tail.length === packContentBytes(blobs) && sha256(tail).toString('hex') === packId;
}

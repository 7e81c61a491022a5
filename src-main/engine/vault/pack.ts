// Packs: many sealed chunks in one file, followed by a sealed header that lists them, so the index can always be
// rebuilt from the packs alone. A pack's name is the SHA-256 of its bytes.
import { hmac, open, seal } from './crypto.js';
import { decompressChunk } from './compress.js';
import type { MasterKeys } from './keys.js';
import type { Storage } from './storage.js';

export const BLOB_AAD = 'clinicvault:blob:v1';
export const HEADER_AAD = 'clinicvault:pack-header:v1';
const HEADER_MAGIC = Buffer.from('CVP1');
const ENTRY_BYTES = 42;

export const enum BlobType {
  Data = 0,
}
export { Compression } from './compress.js';

export interface PackBlob {
  id: Buffer;
  type: number;
  compression: number;
  offset: number;
  length: number;
  rawLength: number;
}

export function encodePackHeader(blobs: PackBlob[]): Buffer {
  const out = Buffer.alloc(8 + blobs.length * ENTRY_BYTES);
  HEADER_MAGIC.copy(out, 0);
  out.writeUInt32LE(blobs.length, 4);
  let o = 8;
  for (const b of blobs) {
    out.writeUInt8(b.type, o);
    out.writeUInt8(b.compression, o + 1);
    out.writeUInt32LE(b.length, o + 2);
    out.writeUInt32LE(b.rawLength, o + 6);
    b.id.copy(out, o + 10);
    o += ENTRY_BYTES;
  }
  return out;
}

export function decodePackHeader(buf: Buffer): PackBlob[] {
  if (buf.length < 8 || !buf.subarray(0, 4).equals(HEADER_MAGIC)) throw new Error('bad pack header magic');
  const n = buf.readUInt32LE(4);
  if (buf.length !== 8 + n * ENTRY_BYTES) throw new Error('bad pack header length');
  const blobs: PackBlob[] = [];
  let o = 8;
  let offset = 0;
  for (let i = 0; i < n; i++) {
    const length = buf.readUInt32LE(o + 2);
    blobs.push({
      type: buf.readUInt8(o),
      compression: buf.readUInt8(o + 1),
      offset,
      length,
      rawLength: buf.readUInt32LE(o + 6),
      id: Buffer.from(buf.subarray(o + 10, o + 42)),
    });
    offset += length;
    o += ENTRY_BYTES;
  }
  return blobs;
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

/** Decrypt, decompress and authenticate one sealed blob against its expected id. */
export function openBlob(keys: MasterKeys, sealed: Buffer, blob: { id: Buffer; compression: number; rawLength: number }, packId: string): Buffer {
  const idHex = blob.id.toString('hex');
  let plain: Buffer;
  try {
    plain = open(keys.encryption, sealed, BLOB_AAD);
  } catch {
    throw new ChunkIntegrityError(idHex, packId, 'authentication failed (the stored bytes were changed)');
  }
  try {
    plain = decompressChunk(plain, blob.compression, blob.rawLength);
  } catch (err) {
    throw new ChunkIntegrityError(idHex, packId, /unknown compression/.test((err as Error).message) ? (err as Error).message : 'cannot be decompressed');
  }
  if (plain.length !== blob.rawLength || !hmac(keys.id, plain).equals(blob.id)) {
    throw new ChunkIntegrityError(idHex, packId, 'content does not match its id');
  }
  return plain;
}

// The index: which pack holds each chunk, at what offset. Index files are sealed, binary, content-addressed.
// The in-memory MasterIndex merges all of them and, if any is damaged or missing, fills the gap from pack headers.
import { open, seal, sha256 } from './crypto.js';
import type { MasterKeys } from './keys.js';
import { decodePackHeader, encodePackHeader, readPackHeader, type PackBlob } from './pack.js';
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

export function encodeIndex(packs: PackRecord[]): Buffer {
  const parts: Buffer[] = [MAGIC, u32(packs.length)];
  for (const p of packs) {
    parts.push(Buffer.from(p.id, 'hex'));
    const h = encodePackHeader(p.blobs);
    // Reuse the pack-header entry layout: u32 length-prefixed "CVP1" block per pack.
    parts.push(u32(h.length), h);
  }
  return Buffer.concat(parts);
}

export function decodeIndex(buf: Buffer): PackRecord[] {
  if (!buf.subarray(0, 4).equals(MAGIC)) throw new Error('bad index magic');
  const n = buf.readUInt32LE(4);
  let o = 8;
  const packs: PackRecord[] = [];
  for (let i = 0; i < n; i++) {
    const id = buf.subarray(o, o + 32).toString('hex');
    const len = buf.readUInt32LE(o + 32);
    const blobs = decodePackHeader(buf.subarray(o + 36, o + 36 + len));
    packs.push({ id, blobs });
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
  const sealed = seal(keys.encryption, encodeIndex(packs), INDEX_AAD);
  const name = sha256(sealed).toString('hex');
  await storage.write('index', name, sealed);
  return name;
}

export interface IndexProblem {
  file: string;
  kind: 'index' | 'pack';
  message: string;
}

export class MasterIndex {
  readonly byId = new Map<string, IndexEntry>();
  readonly packs = new Map<string, PackRecord>();
  readonly problems: IndexProblem[] = [];
  /** Packs present in storage that no index file lists (a backup died before writing its index). */
  readonly recoveredPacks: string[] = [];

  add(pack: PackRecord): void {
    if (this.packs.has(pack.id)) return;
    this.packs.set(pack.id, pack);
    for (const blob of pack.blobs) {
      const key = blob.id.toString('hex');
      if (!this.byId.has(key)) this.byId.set(key, { pack: pack.id, blob });
    }
  }

  has(idHex: string): boolean {
    return this.byId.has(idHex);
  }

  get(idHex: string): IndexEntry | undefined {
    return this.byId.get(idHex);
  }

  static async load(storage: Storage, keys: MasterKeys, opts: { recoverOrphans?: boolean } = {}): Promise<MasterIndex> {
    const idx = new MasterIndex();
    for (const name of await storage.list('index')) {
      try {
        const sealed = await storage.read('index', name);
        if (sha256(sealed).toString('hex') !== name) throw new Error('file content does not match its name');
        for (const p of decodeIndex(open(keys.encryption, sealed, INDEX_AAD))) idx.add(p);
      } catch (err) {
        idx.problems.push({ file: name, kind: 'index', message: `index file ${name.slice(0, 12)} is damaged: ${(err as Error).message}` });
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
}

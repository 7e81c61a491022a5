// Usage: which stored bytes the snapshots still need. For each pack, which of its blobs are the copy the index
// uses for a chunk some snapshot references; for each snapshot, the stored bytes no other snapshot shares.
// Prune acts on it; the space report shows it.
import type { MasterIndex } from './vault/index-file.js';
import type { PackBlob } from './vault/pack.js';
import { decodeContent, type Snapshot } from './vault/snapshot.js';
import type { SnapshotListing } from './vault/vault.js';

export interface PackUsage {
  id: string;
  blobs: PackBlob[];
  /** Blobs that are the index's copy of a chunk a snapshot needs. */
  used: PackBlob[];
  usedBytes: number;
  /** Sealed bytes of the blobs no snapshot needs (forgotten data, or a second copy of a chunk). */
  unusedBytes: number;
}

export interface SnapshotUsage {
  id: string;
  time: string;
  /** Plaintext size of every file in the snapshot. */
  logicalBytes: number;
  /** Stored (sealed) bytes of the chunks only this snapshot references: what forgetting it alone would free. */
  uniqueBytes: number;
}

export interface Usage {
  packs: Map<string, PackUsage>;
  snapshots: SnapshotUsage[];
  /** Chunks snapshots reference that the index does not have (the vault is damaged). */
  missing: number;
  storedBytes: number;
  usedBytes: number;
}

/** `snapshots` may be listed without file lists: each backup's files are read with `load`, one at a time. */
export async function analyzeUsage(index: MasterIndex, snapshots: SnapshotListing[], load: (id: string) => Promise<Snapshot>): Promise<Usage> {
  // For each needed chunk: how many snapshots reference it (1 = unique to one) and which.
  const refs = new Map<string, { count: number; last: number }>();
  let missing = 0;
  const logical: number[] = [];
  for (const [i, listed] of snapshots.entries()) {
    const s = { id: listed.id, snapshot: await load(listed.id) };
    let bytes = 0;
    for (const src of s.snapshot.sources) {
      for (const e of src.entries) {
        if (e.type === 'file') bytes += e.size;
        for (const raw of decodeContent(e.content)) {
          const id = raw.toString('hex');
          const r = refs.get(id);
          if (!r) {
            if (!index.has(id)) missing++;
            refs.set(id, { count: 1, last: i });
          } else if (r.last !== i) {
            r.count++;
            r.last = i;
          }
        }
      }
    }
    logical.push(bytes);
  }
  const unique = new Array<number>(snapshots.length).fill(0);
  for (const [id, r] of refs) {
    if (r.count !== 1) continue;
    const e = index.get(id);
    if (e) unique[r.last]! += e.blob.length;
  }
  const packs = new Map<string, PackUsage>();
  let storedBytes = 0;
  let usedBytes = 0;
  for (const [packId, rec] of index.packs) {
    const used: PackBlob[] = [];
    let u = 0;
    let total = 0;
    for (const b of rec.blobs) {
      total += b.length;
      const id = b.id.toString('hex');
      if (!refs.has(id)) continue;
      const canonical = index.get(id);
      if (canonical && canonical.pack === packId && canonical.blob.offset === b.offset) {
        used.push(b);
        u += b.length;
      }
    }
    packs.set(packId, { id: packId, blobs: rec.blobs, used, usedBytes: u, unusedBytes: total - u });
    storedBytes += total;
    usedBytes += u;
  }
  return {
    packs,
    snapshots: snapshots.map((s, i) => ({ id: s.id, time: s.snapshot.time, logicalBytes: logical[i]!, uniqueBytes: unique[i]! })),
    missing,
    storedBytes,
    usedBytes,
  };
}

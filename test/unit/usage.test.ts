// Usage accounting on a hand-made index and backups (no vault): what each backup alone holds, which copy of a chunk
// counts as used, and chunks no pack holds. Prune deletes by it and refuses by it.
import { describe, expect, it } from 'vitest';
import { analyzeUsage } from '../../src-main/engine/usage.js';
import { MasterIndex } from '../../src-main/engine/vault/index-file.js';
import { BlobType, type PackBlob } from '../../src-main/engine/vault/pack.js';
import type { Snapshot, TreeEntry } from '../../src-main/engine/vault/snapshot.js';

const id = (n: number): Buffer => Buffer.alloc(32, n);
const data = (n: number, offset: number, length: number): PackBlob => ({ id: id(n), type: BlobType.Data, compression: 0, offset, length, rawLength: length });
const file = (path: string, ...chunks: number[]): TreeEntry => ({ path, type: 'file', size: chunks.length * 10, mode: 0o644, mtimeMs: 0, content: Buffer.concat(chunks.map(id)).toString('base64') });
const snapshot = (...entries: TreeEntry[]): Snapshot => ({
  version: 1,
  time: '2026-12-01T00:00:00.000Z',
  host: 'test',
  appVersion: 'test',
  tags: [],
  parent: null,
  sources: [{ kind: 'folder', label: 'media', originalPath: '/m', fileCount: entries.length, bytes: 0, excludes: [], skipped: [], entries }],
  totals: { bytesRead: 0, bytesAdded: 0, chunksAdded: 0, filesNew: 0, filesChanged: 0, filesUnchanged: 0, durationMs: 0 },
  audit: [],
});

describe('usage', () => {
  it('counts what each backup alone holds, the copy the index uses, and chunks no pack holds', async () => {
    const index = new MasterIndex();
    // Pack a: chunks 1, 2, 3. Pack b: a second copy of chunk 2 (the index keeps the first), and chunk 4.
    index.add({ id: 'a'.repeat(64), blobs: [data(1, 0, 100), data(2, 100, 200), data(3, 300, 300)] });
    index.add({ id: 'b'.repeat(64), blobs: [data(2, 0, 200), data(4, 200, 400)] });
    const snaps = new Map<string, Snapshot>([
      ['s1', snapshot(file('x.jpg', 1, 2), file('y.jpg', 2, 9))], // chunk 9 is in no pack
      ['s2', snapshot(file('x.jpg', 1, 2), file('z.jpg', 3, 9, 8))], // chunk 8 neither
    ]);
    const listed = [...snaps.keys()].map((sid) => ({ id: sid, snapshot: snaps.get(sid)! }));
    const usage = await analyzeUsage(index, listed, (sid) => Promise.resolve(snaps.get(sid)!));
    expect(usage.missing).toBe(2); // 8 and 9, each counted once
    expect(usage.snapshots.map((s) => [s.id, s.uniqueBytes, s.logicalBytes])).toEqual([
      ['s1', 0, 40], // 1 and 2 are shared with s2
      ['s2', 300, 50], // 3 is its own
    ]);
    const a = usage.packs.get('a'.repeat(64))!;
    const b = usage.packs.get('b'.repeat(64))!;
    expect([a.usedBytes, a.unusedBytes]).toEqual([600, 0]);
    // b's copy of 2 is not the index's, and no backup needs 4.
    expect([b.used.length, b.usedBytes, b.unusedBytes]).toEqual([0, 0, 600]);
    expect([usage.storedBytes, usage.usedBytes]).toEqual([1200, 600]);
  });
});

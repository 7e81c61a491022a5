// A restore sends the files stored as they are (photos) mixed with the others (a database, documents), and each
// worker runs a streamed photo job beside a job that opens compressed chunks (decision 0036). Whatever runs beside
// what, each file holds exactly its bytes; a damaged or cut-off photo fails that file alone and leaves no partial file.
import { afterEach, describe, expect, it } from 'vitest';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { randomBytes } from 'node:crypto';
import { Vault } from '../../src-main/engine/vault/vault.js';
import { backup } from '../../src-main/engine/backup.js';
import { interleave, restore } from '../../src-main/engine/restore.js';
import { decodeContent } from '../../src-main/engine/vault/snapshot.js';
import { dbContent, hashTree, makeClinicDb, tempDir, writeFile } from '../helpers/clinic.js';
import { PASS } from '../helpers/cli.js';

const workersBefore = process.env.CLINICVAULT_WORKERS;
afterEach(() => {
  if (workersBefore === undefined) delete process.env.CLINICVAULT_WORKERS;
  else process.env.CLINICVAULT_WORKERS = workersBefore;
});

async function clinic(): Promise<{ work: string; vault: Vault; media: string; db: string; snapshotId: string }> {
  const work = tempDir();
  const media = path.join(work, 'media');
  // Photos: random bytes, stored as they are (one of them larger than a streamed job's 1 MiB piece, one larger than
  // a restore segment, so written by several streamed jobs). Documents: compressible, opened whole.
  for (let i = 0; i < 8; i++) writeFile(path.join(media, 'photos', `photo_${i}.jpg`), randomBytes(200_000 + i * 400_000));
  writeFile(path.join(media, 'photos', 'scan_large.jpg'), randomBytes(34 * 1024 * 1024 + 77));
  for (let i = 0; i < 30; i++) writeFile(path.join(media, 'documents', `letter_${i}.pdf`), `%PDF-1.4 letter ${i}\n` + 'The patient was seen for follow-up. '.repeat(3000 + i * 97));
  const db = path.join(work, 'clinic.sqlite');
  makeClinicDb(db, 3000);
  const { vault } = await Vault.init(path.join(work, 'vault'), PASS);
  const r = await backup(vault, { sqlite: [db], folders: [media], appVersion: 'test' });
  expect(r.partial).toBe(false);
  return { work, vault, media, db, snapshotId: r.snapshotId };
}

describe('restore: streamed photos beside the other jobs', () => {
  it.each(['1', '2'])('restores every file exactly with %s worker(s)', async (workers) => {
    process.env.CLINICVAULT_WORKERS = workers;
    const { work, vault, media, db, snapshotId } = await clinic();
    const target = path.join(work, 'restore');
    const res = await restore(vault, await vault.readSnapshot(snapshotId), { target });
    expect(res.failed).toEqual([]);
    expect(hashTree(path.join(target, 'media'))).toEqual(hashTree(media));
    expect(res.databases[0]!.ok).toBe(true);
    expect(dbContent(path.join(target, 'clinic.sqlite'))).toEqual(dbContent(db));
  }, 120_000);

  it('a damaged photo and a photo cut off at the end of its pack fail alone, and leave no partial file', async () => {
    process.env.CLINICVAULT_WORKERS = '1';
    const { work, vault, media, snapshotId } = await clinic();
    const index = await vault.loadIndex();
    const snap = await vault.readSnapshot(snapshotId);
    const photoOf = (rawLength: number): string => snap.sources.flatMap((s) => s.entries).find((e) => e.type === 'file' && e.size === rawLength)!.path;
    // Among the photos stored whole (one chunk each), the last in its pack is cut in half, and another photo in a
    // pack is flipped in its middle.
    const sizes = new Set(Array.from({ length: 8 }, (_, i) => 200_000 + i * 400_000));
    const photos = [...index.packs.values()].flatMap((p) => p.blobs.filter((b) => sizes.has(b.rawLength)).map((b) => ({ pack: p.id, b })));
    expect(photos).toHaveLength(8);
    const packFile = (id: string): string => path.join(vault.location, 'data', id.slice(0, 2), id);
    const byPack = new Map<string, typeof photos>();
    for (const x of photos) byPack.set(x.pack, [...(byPack.get(x.pack) ?? []), x]);
    const [cutPack, inCut] = [...byPack.entries()].sort((a, b) => b[1].length - a[1].length)[0]!;
    const last = inCut.reduce((a, x) => (x.b.offset > a.b.offset ? x : a));
    const flipped = photos.find((x) => x.pack !== cutPack || x.b.offset < last.b.offset)!;
    expect(fs.existsSync(packFile(cutPack))).toBe(true);
    const f = packFile(flipped.pack);
    const bytes = fs.readFileSync(f);
    bytes[flipped.b.offset + Math.floor(flipped.b.length / 2)]! ^= 1;
    fs.writeFileSync(f, bytes);
    fs.truncateSync(packFile(cutPack), last.b.offset + Math.floor(last.b.length / 2));
    // And a chunk in the middle of the large scan (several chunks, read ahead across them): its job fails with the
    // next piece's read under way, and the jobs after it still read their own bytes.
    const media_ = snap.sources.find((s) => s.label === 'media')!;
    const scanIds = decodeContent(media_.entries.find((e) => e.path === 'photos/scan_large.jpg')!.content).map((id) => id.toString('hex'));
    const mid = [...index.packs.values()].flatMap((p) => p.blobs.filter((b) => b.id.toString('hex') === scanIds[Math.floor(scanIds.length / 2)]).map((b) => ({ pack: p.id, b })))[0]!;
    expect(mid.pack).not.toBe(cutPack);
    const midFile = packFile(mid.pack);
    const midBytes = fs.readFileSync(midFile);
    midBytes[mid.b.offset + 20]! ^= 1;
    fs.writeFileSync(midFile, midBytes);

    // What else the cut took: every file with a chunk stored after the cut in that pack.
    const cutAt = last.b.offset + Math.floor(last.b.length / 2);
    const lost = new Set(index.packs.get(cutPack)!.blobs.filter((b) => b.offset + b.length > cutAt).map((b) => b.id.toString('hex')));
    const cutNames = snap.sources.find((s) => s.label === 'media')!.entries.filter((e) => e.type === 'file' && decodeContent(e.content).some((id) => lost.has(id.toString('hex')))).map((e) => `media/${e.path}`);

    const target = path.join(work, 'restore');
    const res = await restore(vault, snap, { target, index });
    const failed = Object.fromEntries(res.failed.map((x) => [x.path, x.reason]));
    const cutName = `media/${photoOf(last.b.rawLength)}`;
    const flippedName = `media/${photoOf(flipped.b.rawLength)}`;
    expect(cutNames).toContain(cutName);
    const scan = 'media/photos/scan_large.jpg';
    const lostFiles = [...new Set([...cutNames, flippedName, scan])];
    expect(Object.keys(failed).sort()).toEqual(lostFiles.sort());
    // (The scan may also have chunks past the cut: it fails on whichever its jobs meet first.)
    for (const name of cutNames) expect(failed[name]).toMatch(name === scan ? /its pack is truncated|authentication failed/ : /its pack is truncated/);
    expect(failed[flippedName]).toMatch(/authentication failed/);
    expect(failed[scan]).toMatch(/its pack is truncated|authentication failed/);
    if (!cutNames.includes(scan)) expect(failed[scan]).toMatch(/authentication failed/);
    const expected = hashTree(media);
    for (const name of lostFiles) delete expected[name.slice('media/'.length)];
    // Every other file whole, and nothing else (no partial file) in the target.
    expect(hashTree(path.join(target, 'media'))).toEqual(expected);
    expect(res.databases[0]!.ok).toBe(true);
  }, 120_000);
});

describe('interleave', () => {
  const file = (name: string, size: number): { name: string; entry: { size: number } } => ({ name, entry: { size } });

  it('keeps each kind in its order and sends the same share of each at every moment', () => {
    const photos = Array.from({ length: 40 }, (_, i) => file(`p${i}`, 3_000_000 + (i % 5) * 100_000));
    const others = [file('db', 200_000_000), ...Array.from({ length: 100 }, (_, i) => file(`d${i}`, 300_000 + (i % 7) * 50_000))];
    const all = [...others.slice(0, 50), ...photos, ...others.slice(50)];
    const order = interleave(all, (f) => f.name.startsWith('p'));
    expect(order.filter((f) => f.name.startsWith('p'))).toEqual(photos);
    expect(order.filter((f) => !f.name.startsWith('p'))).toEqual(others);
    const total = (l: typeof all): number => l.reduce((n, f) => n + f.entry.size, 0);
    const [tp, to] = [total(photos), total(others)];
    // Either kind is ahead of the other by at most one file's share of its kind (the database's, 79%, once).
    const largest = Math.max(...photos.map((f) => f.entry.size / tp), ...others.map((f) => f.entry.size / to));
    let [sp, so] = [0, 0];
    for (const f of order) {
      if (f.name.startsWith('p')) sp += f.entry.size;
      else so += f.entry.size;
      expect(Math.abs(sp / tp - so / to)).toBeLessThanOrEqual(largest + 1e-9);
    }
    // The photos are not all sent after the documents (nor before them): the first photo goes out right after the
    // database, the last one before the last document.
    expect(order.findIndex((f) => f.name.startsWith('p'))).toBe(1);
    expect(order.at(-1)!.name.startsWith('d')).toBe(true);
  });

  it('leaves a list of one kind as it is', () => {
    const only = [file('a', 5), file('b', 1), file('c', 9)];
    expect(interleave(only, () => true)).toEqual(only);
    expect(interleave(only, () => false)).toEqual(only);
    expect(interleave([], () => true)).toEqual([]);
  });
});

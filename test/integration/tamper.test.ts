// One flipped byte in a pack, an index file or a snapshot is found by verify, which names what it affects;
// everything not affected still restores.
import { describe, expect, it } from 'vitest';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Vault } from '../../src-main/engine/vault/vault.js';
import { backup } from '../../src-main/engine/backup.js';
import { restore } from '../../src-main/engine/restore.js';
import { verify } from '../../src-main/engine/verify.js';
import { decodeContent, writeSnapshot } from '../../src-main/engine/vault/snapshot.js';
import type { PackBlob } from '../../src-main/engine/vault/pack.js';
import { randomBytes } from 'node:crypto';
import { hashTree, makeMedia, tempDir, writeFile } from '../helpers/clinic.js';
import { cli, cliEnv, PASS } from '../helpers/cli.js';

function flip(file: string, offset: number): void {
  const b = fs.readFileSync(file);
  b[offset] = b[offset]! ^ 0x01;
  fs.writeFileSync(file, b);
}

async function twoPackVault(): Promise<{ work: string; vault: Vault; media: string; snaps: string[] }> {
  const work = tempDir();
  const media = path.join(work, 'media');
  makeMedia(media, 2, 2);
  const { vault } = await Vault.init(path.join(work, 'vault'), PASS);
  const a = await backup(vault, { folders: [media], appVersion: 'test' });
  writeFile(path.join(media, 'later', 'new.jpg'), Buffer.alloc(200_000, 9));
  const b = await backup(vault, { folders: [media], appVersion: 'test' });
  return { work, vault, media, snaps: [a.snapshotId, b.snapshotId] };
}

function packFiles(vaultDir: string): string[] {
  const data = path.join(vaultDir, 'data');
  return fs.readdirSync(data).flatMap((d) => fs.readdirSync(path.join(data, d)).map((f) => path.join(data, d, f)));
}

describe('tamper detection', () => {
  it('a flipped byte inside a pack: verify --read-data names the pack, snapshots and files; the rest restores', async () => {
    const { work, vault, media, snaps } = await twoPackVault();
    const index = await vault.loadIndex();
    // The pack written by the second backup holds only later/new.jpg.
    const second = [...index.packs.values()].find((p) => p.blobs.length === 1)!;
    const file = packFiles(vault.location).find((f) => f.endsWith(second.id))!;
    const blob = second.blobs[0]!;
    flip(file, blob.offset + Math.floor(blob.length / 2)); // inside the chunk's sealed bytes, not the pack's header
    expect((await verify(vault)).ok).toBe(true); // structure is intact; only reading the data finds it
    const report = await verify(vault, { readData: true });
    expect(report.ok).toBe(false);
    const p = report.problems.find((x) => x.kind === 'pack')!;
    expect(p.message).toContain(`pack ${second.id.slice(0, 12)} is damaged`);
    expect(p.affectedSnapshots).toEqual([snaps[1]]);
    expect(p.affectedFiles).toEqual(['media/later/new.jpg']);

    const full = await restore(vault, await vault.readSnapshot(snaps[1]!), { target: path.join(work, 'r1') });
    expect(full.failed.map((f) => f.path)).toEqual(['media/later/new.jpg']);
    const expected = hashTree(media);
    delete expected['later/new.jpg'];
    expect(hashTree(path.join(work, 'r1', 'media'))).toEqual(expected);

    // Through the CLI: exit code 5 and a sentence, not a stack trace.
    const env = cliEnv(path.join(work, 'home'));
    const v = cli(['verify', '--vault', vault.location, '--read-data'], env);
    expect(v.code).toBe(5);
    expect(v.stdout).toMatch(/is damaged.*affected files: media\/later\/new\.jpg/);
  });

  // Two sealed photos of the same length trade places: each blob still authenticates on its own, the packs' tails
  // and headers are untouched, and the index still fits. Format 3 refuses them by the chunk id in each
  // blob's aad, format 2 by the hash of the plaintext (decision 0026).
  it.each([2, 3])('two data blobs of one length swapped: verify --read-data and restore refuse both (format %i)', async (version) => {
    const work = tempDir();
    const media = path.join(work, 'media');
    writeFile(path.join(media, 'a.jpg'), randomBytes(150_000));
    writeFile(path.join(media, 'b.jpg'), randomBytes(150_000));
    writeFile(path.join(media, 'notes.txt'), 'untouched\n');
    const dir = path.join(work, 'vault');
    await Vault.init(dir, PASS);
    const configFile = path.join(dir, 'config.json');
    fs.writeFileSync(configFile, JSON.stringify({ ...JSON.parse(fs.readFileSync(configFile, 'utf8')), version }, null, 2));
    const vault = await Vault.open(dir, { passphrase: PASS });
    const { snapshotId } = await backup(vault, { folders: [media], appVersion: 'test' });
    // Each worker fills a pack of its own: the two may be in one pack or in two.
    const photos = [...(await vault.loadIndex()).packs.values()].flatMap((p) => p.blobs.filter((x) => x.rawLength === 150_000).map((blob) => ({ blob, file: packFiles(dir).find((f) => f.endsWith(p.id))! })));
    expect(photos).toHaveLength(2);
    const [x, y] = photos as [{ blob: PackBlob; file: string }, { blob: PackBlob; file: string }];
    expect(x.blob.length).toBe(y.blob.length);
    const sealedX = fs.readFileSync(x.file).subarray(x.blob.offset, x.blob.offset + x.blob.length);
    const sealedY = fs.readFileSync(y.file).subarray(y.blob.offset, y.blob.offset + y.blob.length);
    for (const [to, sealed] of [[x, sealedY], [y, sealedX]] as const) {
      const bytes = fs.readFileSync(to.file);
      sealed.copy(bytes, to.blob.offset);
      fs.writeFileSync(to.file, bytes);
    }

    const report = await verify(vault, { readData: true });
    expect(report.ok).toBe(false);
    expect(report.problems.map((p) => p.message).join('\n')).toMatch(/pack [0-9a-f]{12} is damaged/);
    const res = await restore(vault, await vault.readSnapshot(snapshotId), { target: path.join(work, 'r') });
    expect(res.failed.map((f) => f.path).sort()).toEqual(['media/a.jpg', 'media/b.jpg']);
    expect(hashTree(path.join(work, 'r'))).toEqual({ 'media/notes.txt': hashTree(media)['notes.txt'] });
  });

  it('a flipped byte in an index file: found, and every backup still restores from the pack headers', async () => {
    const { work, vault, media, snaps } = await twoPackVault();
    const idxDir = path.join(vault.location, 'index');
    const name = fs.readdirSync(idxDir)[0]!;
    flip(path.join(idxDir, name), 40);
    const report = await verify(vault, { readData: true });
    expect(report.ok).toBe(false);
    expect(report.problems).toHaveLength(1);
    expect(report.problems[0]!.message).toMatch(new RegExp(`index file ${name.slice(0, 12)} is damaged`));
    const res = await restore(vault, await vault.readSnapshot(snaps[1]!), { target: path.join(work, 'r') });
    expect(res.failed).toEqual([]);
    expect(hashTree(path.join(work, 'r', 'media'))).toEqual(hashTree(media));
  });

  it('a flipped byte in a snapshot: that backup is reported damaged, the other restores', async () => {
    const { work, vault, snaps } = await twoPackVault();
    flip(path.join(vault.location, 'snapshots', snaps[0]!), 30);
    const report = await verify(vault);
    expect(report.ok).toBe(false);
    expect(report.problems.map((p) => p.kind)).toEqual(['snapshot']);
    expect(report.problems[0]!.message).toContain(`snapshot ${snaps[0]!.slice(0, 8)} is damaged`);
    await expect(vault.resolveSnapshot(snaps[0]!.slice(0, 8))).rejects.toThrow(/damaged/);
    const res = await restore(vault, await vault.readSnapshot(snaps[1]!), { target: path.join(work, 'r') });
    expect(res.failed).toEqual([]);
  });

  it('a flipped byte anywhere in a pack is caught (every position class: chunk, header, trailer)', async () => {
    const { vault } = await twoPackVault();
    const file = packFiles(vault.location).sort((a, b) => fs.statSync(b).size - fs.statSync(a).size)[0]!;
    const size = fs.statSync(file).size;
    for (const off of [0, Math.floor(size / 2), size - 60, size - 2]) {
      const original = fs.readFileSync(file);
      flip(file, off);
      const report = await verify(vault, { readData: true });
      expect(report.ok, `offset ${off}`).toBe(false);
      fs.writeFileSync(file, original);
    }
    expect((await verify(vault, { readData: true })).ok).toBe(true);
  });

  // verify reads a pack a few MiB at a time: damage far into a large pack must still be found and pinned on exactly
  // the files whose chunks are there, not on the files read before it.
  it('damage deep in a large pack names exactly the files whose chunks are there', async () => {
    const work = tempDir();
    const media = path.join(work, 'media');
    for (let i = 0; i < 16; i++) writeFile(path.join(media, `photo_${i}.jpg`), randomBytes(1_400_000 + i * 10_000));
    const { vault } = await Vault.init(path.join(work, 'vault'), PASS);
    const { snapshotId } = await backup(vault, { folders: [media], appVersion: 'test' });
    const index = await vault.loadIndex();
    const pack = [...index.packs.values()].sort((a, b) => b.blobs.length - a.blobs.length)[0]!;
    const file = packFiles(vault.location).find((f) => f.endsWith(pack.id))!;
    const end = Math.max(...pack.blobs.map((b) => b.offset + b.length));
    expect(end).toBeGreaterThan(9 * 1024 * 1024); // more than two of verify's pieces
    const snap = await vault.readSnapshot(snapshotId);
    const filesWith = (ids: Set<string>): string[] =>
      snap.sources[0]!.entries.filter((e) => decodeContent(e.content).some((id) => ids.has(id.toString('hex')))).map((e) => `media/${e.path}`).sort();
    const original = fs.readFileSync(file);
    // One chunk in the middle of the pack and the last one, each flipped in its middle.
    const byOffset = [...pack.blobs].sort((x, y) => x.offset - y.offset);
    const hit = [byOffset[Math.floor(byOffset.length / 2)]!, byOffset[byOffset.length - 1]!];
    expect(hit[0]!.offset).toBeGreaterThan(4 * 1024 * 1024);
    for (const b of hit) flip(file, b.offset + Math.floor(b.length / 2));
    const report = await verify(vault, { readData: true });
    expect(report.ok).toBe(false);
    const expected = filesWith(new Set(hit.map((b) => b.id.toString('hex'))));
    expect(expected.length).toBe(2);
    expect(report.problems.flatMap((p) => p.affectedFiles)).toEqual(expected);

    fs.writeFileSync(file, original);
    expect((await verify(vault, { readData: true })).ok).toBe(true);
  });

  it('a pack gone from the drive: verify names it and what needs it; a backup that a rewrite superseded does not count', async () => {
    const { vault, snaps } = await twoPackVault();
    const index = await vault.loadIndex();
    const second = [...index.packs.values()].find((p) => p.blobs.length === 1)!;
    const file = packFiles(vault.location).find((f) => f.endsWith(second.id))!;
    const kept = fs.readFileSync(file);
    fs.rmSync(file);
    const report = await verify(vault);
    expect(report.ok).toBe(false);
    expect(report.problems).toHaveLength(1);
    expect(report.problems[0]!.message).toContain(`pack ${second.id.slice(0, 12)} is damaged: the file is missing from the drive`);
    expect(report.problems[0]!.affectedSnapshots).toEqual([snaps[1]]);
    expect(report.problems[0]!.affectedFiles).toEqual(['media/later/new.jpg']);

    // An interrupted rewrite (erase) left the original second backup beside its rewrite, which no longer has the
    // file: only the rewrite counts, so nothing that is needed is missing.
    const original = await vault.readSnapshot(snaps[1]!);
    const rewrite = {
      ...original,
      rewrittenFrom: snaps[1]!,
      sources: original.sources.map((src) => ({ ...src, entries: src.entries.filter((e) => !e.path.startsWith('later')) })),
    };
    await writeSnapshot(vault.storage, vault.keys, rewrite);
    const after = await verify(vault);
    expect(after.problems).toEqual([]);
    expect(after.snapshots).toBe(2);
    fs.writeFileSync(file, kept);
    expect((await verify(vault, { readData: true })).ok).toBe(true);
  });
});

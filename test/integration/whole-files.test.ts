// Decision 0020: a file no larger than the largest chunk is stored as one chunk (new vaults), sealed as the pack
// writer takes it and restored in pieces; vaults made before keep cutting every file.
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { backup } from '../../src-main/engine/backup.js';
import { restore } from '../../src-main/engine/restore.js';
import { verify } from '../../src-main/engine/verify.js';
import { decodeContent } from '../../src-main/engine/vault/snapshot.js';
import { Vault } from '../../src-main/engine/vault/vault.js';
import { hashTree, tempDir, writeFile } from '../helpers/clinic.js';
import { PASS } from '../helpers/cli.js';

const MiB = 1024 * 1024;

async function chunksPerFile(vault: Vault, snapshotId: string): Promise<Record<string, number>> {
  const snap = await vault.readSnapshot(snapshotId);
  return Object.fromEntries(snap.sources[0]!.entries.filter((e) => e.type === 'file').map((e) => [e.path, decodeContent(e.content).length]));
}

describe('whole files', () => {
  it('stores a file that fits in one chunk as one chunk and cuts a larger one; a vault made before cuts both', async () => {
    const work = tempDir();
    const media = path.join(work, 'media');
    writeFile(path.join(media, 'photo.jpg'), randomBytes(3 * MiB + 123));
    writeFile(path.join(media, 'scan.tif'), randomBytes(12 * MiB));
    const { vault } = await Vault.init(path.join(work, 'vault'), PASS);
    expect(vault.config.chunking.files.whole).toBe(8 * MiB);
    const { snapshotId } = await backup(vault, { folders: [media], appVersion: 'test' });
    const counts = await chunksPerFile(vault, snapshotId);
    expect(counts['photo.jpg']).toBe(1);
    expect(counts['scan.tif']).toBeGreaterThan(1);
    const index = await vault.loadIndex();
    expect(Math.max(...[...index.packs.values()].flatMap((p) => p.blobs.map((b) => b.rawLength)))).toBeLessThanOrEqual(8 * MiB);
    const r = await restore(vault, await vault.readSnapshot(snapshotId), { target: path.join(work, 'r') });
    expect(r.failed).toEqual([]);
    expect(hashTree(path.join(work, 'r', 'media'))).toEqual(hashTree(media));

    // The same files into a vault whose config predates `whole`: every file is cut, as it always was there.
    const oldLoc = path.join(work, 'old');
    await Vault.init(oldLoc, PASS);
    const configFile = path.join(oldLoc, 'config.json');
    const config = JSON.parse(fs.readFileSync(configFile, 'utf8')) as { chunking: { files: Record<string, unknown> } };
    delete config.chunking.files.whole;
    fs.writeFileSync(configFile, JSON.stringify(config, null, 2));
    const old = await Vault.open(oldLoc, { passphrase: PASS });
    const before = await backup(old, { folders: [media], appVersion: 'test' });
    expect((await chunksPerFile(old, before.snapshotId))['photo.jpg']).toBeGreaterThan(1);
  });

  it('a photo damaged near its end: the restore names it and leaves neither it nor a partial file; the rest restores', async () => {
    const work = tempDir();
    const media = path.join(work, 'media');
    writeFile(path.join(media, 'a', 'photo.jpg'), randomBytes(5 * MiB));
    writeFile(path.join(media, 'a', 'note.txt'), 'treatment plan\n'.repeat(1000));
    const { vault } = await Vault.init(path.join(work, 'vault'), PASS);
    const { snapshotId } = await backup(vault, { folders: [media], appVersion: 'test' });
    const index = await vault.loadIndex();
    const pack = [...index.packs.values()].find((p) => p.blobs.some((b) => b.rawLength === 5 * MiB))!;
    const blob = pack.blobs.find((b) => b.rawLength === 5 * MiB)!;
    const file = path.join(vault.location, 'data', pack.id.slice(0, 2), pack.id);
    const bytes = fs.readFileSync(file);
    // Past the first four 1 MiB pieces: they are written before the damage is found.
    bytes[blob.offset + blob.length - 1000] ^= 0x40;
    fs.writeFileSync(file, bytes);

    const target = path.join(work, 'r');
    const r = await restore(vault, await vault.readSnapshot(snapshotId), { target });
    expect(r.failed.map((f) => f.path)).toEqual(['media/a/photo.jpg']);
    expect(fs.readdirSync(path.join(target, 'media', 'a'))).toEqual(['note.txt']);
    expect(fs.readFileSync(path.join(target, 'media', 'a', 'note.txt'), 'utf8')).toBe('treatment plan\n'.repeat(1000));
    const report = await verify(vault, { readData: true });
    expect(report.problems.flatMap((p) => p.affectedFiles)).toEqual(['media/a/photo.jpg']);
  });
});

// Decision 0023: the local cache of a vault's index. A command must find in it exactly what the index files say, and
// must read the index files instead whenever the cache is not for them: another computer's backup, a damaged cache,
// another vault's cache.
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { backup } from '../../src-main/engine/backup.js';
import { restore } from '../../src-main/engine/restore.js';
import { verify } from '../../src-main/engine/verify.js';
import type { MasterIndex } from '../../src-main/engine/vault/index-file.js';
import { Vault } from '../../src-main/engine/vault/vault.js';
import { hashTree, tempDir, writeFile } from '../helpers/clinic.js';
import { PASS } from '../helpers/cli.js';

/** Every chunk's place, as the index answers for it. */
function places(index: MasterIndex): string[] {
  const out: string[] = [];
  for (const pack of index.packs.values()) for (const b of pack.blobs) out.push(JSON.stringify(index.get(b.id)));
  return out.sort();
}

function cacheFiles(dir: string): string[] {
  return fs.existsSync(dir) ? fs.readdirSync(dir).filter((f) => f.startsWith('index-')) : [];
}

/** A vault with one backup of one photo, made with a local cache. */
async function oneBackup(): Promise<{ work: string; media: string; cacheDir: string; loc: string; vault: Vault; snapshotId: string }> {
  const work = tempDir();
  const media = path.join(work, 'media');
  const cacheDir = path.join(work, 'cache');
  writeFile(path.join(media, 'a.jpg'), randomBytes(30_000));
  const loc = path.join(work, 'vault');
  await Vault.init(loc, PASS);
  const vault = await Vault.open(loc, { passphrase: PASS }, { cacheDir });
  const { snapshotId } = await backup(vault, { folders: [media], appVersion: 'test' });
  return { work, media, cacheDir, loc, vault, snapshotId };
}

describe('index cache', () => {
  it('holds what the index files hold after each backup, and is read instead of them', async () => {
    const work = tempDir();
    const media = path.join(work, 'media');
    const cacheDir = path.join(work, 'cache');
    for (let i = 0; i < 20; i++) writeFile(path.join(media, `p${i}.jpg`), randomBytes(20_000 + i));
    writeFile(path.join(media, 'notes.txt'), 'allergy: penicillin\n'.repeat(5000));
    const loc = path.join(work, 'vault');
    await Vault.init(loc, PASS);
    const vault = await Vault.open(loc, { passphrase: PASS }, { cacheDir });
    const first = await backup(vault, { folders: [media], appVersion: 'test' });
    expect(cacheFiles(cacheDir)).toHaveLength(1);

    const plain = await Vault.open(loc, { passphrase: PASS });
    const fromFiles = await plain.loadIndex();
    expect(fromFiles.fromCache).toBe(false);
    const cached = await (await Vault.open(loc, { passphrase: PASS }, { cacheDir })).loadIndex();
    expect(cached.fromCache).toBe(true);
    expect(cached.size).toBe(fromFiles.size);
    expect(places(cached)).toEqual(places(fromFiles));

    // A second backup with the cache: it dedups against the cached index and leaves the cache current.
    writeFile(path.join(media, 'new.jpg'), randomBytes(50_000));
    const second = await backup(vault, { folders: [media], appVersion: 'test' });
    expect(second.snapshot.totals.filesNew).toBe(1);
    expect(second.stats.chunksNew).toBe(1);
    const after = await (await Vault.open(loc, { passphrase: PASS }, { cacheDir })).loadIndex();
    expect(after.fromCache).toBe(true);
    expect(places(after)).toEqual(places(await plain.loadIndex()));

    // A restore through the cached index gives back the files.
    const target = path.join(work, 'restored');
    const r = await restore(vault, await vault.readSnapshot(first.snapshotId), { target });
    expect(r.failed).toEqual([]);
    const { ['new.jpg']: added, ...before } = hashTree(media);
    expect(added).toBeDefined();
    expect(hashTree(path.join(target, 'media'))).toEqual(before);
  });

  it('is not used when the vault changed elsewhere, is damaged, or belongs to another vault', async () => {
    const { work, media, cacheDir, loc } = await oneBackup();
    const [cacheName] = cacheFiles(cacheDir);
    const cacheFile = path.join(cacheDir, cacheName!);

    // Another computer backs up to the same vault (no cache here): its index file is not in the cache.
    writeFile(path.join(media, 'b.jpg'), randomBytes(30_000));
    await backup(await Vault.open(loc, { passphrase: PASS }), { folders: [media], appVersion: 'test' });
    const fresh = await (await Vault.open(loc, { passphrase: PASS }, { cacheDir })).loadIndex();
    expect(fresh.fromCache).toBe(false);
    const expected = places(await (await Vault.open(loc, { passphrase: PASS })).loadIndex());
    expect(places(fresh)).toEqual(expected);
    // ... and the cache was made again for it.
    expect((await (await Vault.open(loc, { passphrase: PASS }, { cacheDir })).loadIndex()).fromCache).toBe(true);

    // A damaged cache is read past.
    const bytes = fs.readFileSync(cacheFile);
    bytes[bytes.length >> 1]! ^= 0x40;
    fs.writeFileSync(cacheFile, bytes);
    const afterDamage = await (await Vault.open(loc, { passphrase: PASS }, { cacheDir })).loadIndex();
    expect(afterDamage.fromCache).toBe(false);
    expect(places(afterDamage)).toEqual(expected);

    // Another vault's cache, put where this vault's is, is not taken for it.
    const otherLoc = path.join(work, 'other');
    await Vault.init(otherLoc, PASS);
    const otherCache = path.join(work, 'other-cache');
    await backup(await Vault.open(otherLoc, { passphrase: PASS }, { cacheDir: otherCache }), { folders: [media], appVersion: 'test' });
    fs.copyFileSync(path.join(otherCache, cacheFiles(otherCache)[0]!), cacheFile);
    const notOther = await (await Vault.open(loc, { passphrase: PASS }, { cacheDir })).loadIndex();
    expect(notOther.fromCache).toBe(false);
    expect(places(notOther)).toEqual(expected);
  });

  it('does not hide from verify a damaged index file on the drive', async () => {
    const { work, media, loc, vault, snapshotId } = await oneBackup();
    expect((await vault.loadIndex()).fromCache).toBe(true);
    // Intact index files: the cache stands for them once each is proved to be as written.
    expect((await vault.loadIndex({ checkFiles: true })).fromCache).toBe(true);
    const indexDir = path.join(loc, 'index');
    const file = path.join(indexDir, fs.readdirSync(indexDir)[0]!);
    const bytes = fs.readFileSync(file);
    bytes[40]! ^= 0x01;
    fs.writeFileSync(file, bytes);
    expect((await vault.loadIndex({ checkFiles: true })).fromCache).toBe(false);
    const report = await verify(vault, { readData: true });
    expect(report.problems.map((p) => p.kind)).toContain('index');
    // A restore still has every chunk: from the cache here, from the packs' headers on a computer without it.
    const r = await restore(vault, await vault.readSnapshot(snapshotId), { target: path.join(work, 'r') });
    expect(r.failed).toEqual([]);
    expect(hashTree(path.join(work, 'r', 'media'))).toEqual(hashTree(media));
  });
});

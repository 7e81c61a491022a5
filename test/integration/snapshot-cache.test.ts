// Decision 0024: the local cache of a vault's list of backups. A cached listing must list exactly what the vault
// holds (backups made elsewhere, removed ones, a damaged cache), read only the snapshots it has not seen and the
// newest, and a backup or restore must still act correctly on a snapshot damaged after it was cached.
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, expect, it, vi } from 'vitest';
import { backup } from '../../src-main/engine/backup.js';
import { restore } from '../../src-main/engine/restore.js';
import { Vault } from '../../src-main/engine/vault/vault.js';
import { hashTree, tempDir, writeFile } from '../helpers/clinic.js';
import { PASS } from '../helpers/cli.js';

async function listings(vault: Vault, cached: boolean): Promise<unknown> {
  const { snapshots, damaged, latestFull } = await vault.listSnapshots({ entries: false, cached });
  return { snapshots, damaged: damaged.map((d) => d.id), latest: latestFull };
}

function flipByte(file: string): void {
  const bytes = fs.readFileSync(file);
  bytes[bytes.length >> 1]! ^= 0xff;
  fs.writeFileSync(file, bytes);
}

describe('snapshot cache', () => {
  it('lists what the vault holds, reading only new snapshots and the newest', async () => {
    const work = tempDir();
    const media = path.join(work, 'media');
    const cacheDir = path.join(work, 'cache');
    const loc = path.join(work, 'vault');
    await Vault.init(loc, PASS);
    const vault = await Vault.open(loc, { passphrase: PASS }, { cacheDir });
    for (let i = 0; i < 4; i++) {
      writeFile(path.join(media, `p${i}.jpg`), randomBytes(10_000));
      await backup(vault, { folders: [media], appVersion: 'test' });
    }
    const plain = await Vault.open(loc, { passphrase: PASS });
    const fresh = async (): Promise<Vault> => Vault.open(loc, { passphrase: PASS }, { cacheDir });

    // The fourth backup is new to the cache: read once, and then only as the newest.
    for (let round = 0; round < 2; round++) {
      const v = await fresh();
      const reads = vi.spyOn(v, 'readSnapshot');
      expect(await listings(v, true)).toEqual(await listings(plain, false));
      expect(reads).toHaveBeenCalledTimes(1);
    }
    const uncached = await fresh();
    const reads = vi.spyOn(uncached, 'readSnapshot');
    await uncached.listSnapshots({ entries: false });
    expect(reads).toHaveBeenCalledTimes(4);

    // A backup from another computer (no cache here) is listed, and the cache learns it.
    writeFile(path.join(media, 'elsewhere.jpg'), randomBytes(10_000));
    await backup(plain, { folders: [media], appVersion: 'test' });
    expect(await listings(await fresh(), true)).toEqual(await listings(plain, false));

    // A backup removed from the vault is no longer listed.
    const oldest = (await plain.listSnapshots({ entries: false })).snapshots[0]!.id;
    fs.rmSync(plain.storage.filePath('snapshots', oldest));
    const after = (await listings(await fresh(), true)) as { snapshots: Array<{ id: string }> };
    expect(after.snapshots.map((s) => s.id)).not.toContain(oldest);
    expect(after).toEqual(await listings(plain, false));

    // A damaged cache is read as no cache.
    const [cacheFile] = fs.readdirSync(cacheDir).filter((f) => f.startsWith('snapshots-'));
    flipByte(path.join(cacheDir, cacheFile!));
    const v = await fresh();
    const readsAfterDamage = vi.spyOn(v, 'readSnapshot');
    expect(await listings(v, true)).toEqual(await listings(plain, false));
    expect(readsAfterDamage).toHaveBeenCalledTimes(4);
  });

  it('a snapshot damaged after it was cached: restore says so, a backup reads its folder afresh', async () => {
    const work = tempDir();
    const photos = path.join(work, 'photos');
    const scans = path.join(work, 'scans');
    const cacheDir = path.join(work, 'cache');
    const loc = path.join(work, 'vault');
    for (let i = 0; i < 3; i++) writeFile(path.join(photos, `p${i}.jpg`), randomBytes(20_000));
    writeFile(path.join(scans, 'letter.pdf'), randomBytes(15_000));
    await Vault.init(loc, PASS);
    const vault = await Vault.open(loc, { passphrase: PASS }, { cacheDir });
    const first = await backup(vault, { folders: [photos], appVersion: 'test' });
    await backup(vault, { folders: [scans], appVersion: 'test' });
    await vault.listSnapshots({ entries: false, cached: true }); // both are in the cache now
    flipByte(vault.storage.filePath('snapshots', first.snapshotId));

    const v = await Vault.open(loc, { passphrase: PASS }, { cacheDir });
    await expect(v.resolveSnapshot(first.snapshotId.slice(0, 8))).rejects.toThrow(/Snapshot [0-9a-f]{8} is damaged and cannot be read\. Run "clinicvault verify"/);

    // The photos' parent is the damaged backup: they are read again, stored once (dedup), and restore whole.
    const again = await backup(v, { folders: [photos], appVersion: 'test' });
    expect(again.snapshot.totals.filesNew).toBe(3);
    expect(again.stats.chunksNew).toBe(0);
    const target = path.join(work, 'restored');
    const r = await restore(v, await v.readSnapshot(again.snapshotId), { target });
    expect(r.failed).toEqual([]);
    expect(hashTree(path.join(target, 'photos'))).toEqual(hashTree(photos));

    // The newest snapshot, cached and then damaged, is listed as the vault lists it: as damaged, with the others.
    await v.listSnapshots({ entries: false, cached: true });
    flipByte(v.storage.filePath('snapshots', again.snapshotId));
    const cachedList = (await listings(await Vault.open(loc, { passphrase: PASS }, { cacheDir }), true)) as { damaged: string[] };
    expect(cachedList.damaged.sort()).toEqual([first.snapshotId, again.snapshotId].sort());
    expect(cachedList).toEqual(await listings(await Vault.open(loc, { passphrase: PASS }), false));
  });
});

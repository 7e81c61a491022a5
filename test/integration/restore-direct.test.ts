// A restore writes the long stretches of the files it restores past the page cache (decision 0029): page-aligned
// blocks with O_DIRECT, their unaligned ends and short stretches through the page cache. Whatever the chunks' sizes
// and order, each restored file holds exactly its bytes; the database, which the restore then checks, stays cached.
import { describe, expect, it } from 'vitest';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { createHash, randomBytes } from 'node:crypto';
import { Vault } from '../../src-main/engine/vault/vault.js';
import { backup } from '../../src-main/engine/backup.js';
import { restore } from '../../src-main/engine/restore.js';
import { alignedMemory, O_DIRECT } from '../../src-main/engine/vault/direct-io.js';
import { makeClinicDb, dbContent, tempDir } from '../helpers/clinic.js';
import { PASS } from '../helpers/cli.js';

const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

/** Whether files in dir can be written with O_DIRECT (Linux, a file system that takes it). */
function directWorks(dir: string): boolean {
  if (O_DIRECT === undefined) return false;
  const probe = path.join(dir, 'probe');
  try {
    const fd = fs.openSync(probe, fs.constants.O_WRONLY | fs.constants.O_CREAT | O_DIRECT, 0o600);
    try {
      fs.writeSync(fd, alignedMemory(4096), 0, 4096, 0);
    } finally {
      fs.closeSync(fd);
    }
    return true;
  } catch {
    return false;
  } finally {
    fs.rmSync(probe, { force: true });
  }
}

describe('restore past the page cache', () => {
  it('restores files exactly, however their chunks fall against page boundaries and in whatever order they are stored', async () => {
    const work = tempDir();
    const media = path.join(work, 'media');
    fs.mkdirSync(media);
    const block = randomBytes(2 * 1024 * 1024);
    const odd = randomBytes(5 * 1024 * 1024 + 123);
    const files: Record<string, Buffer> = {
      // Below the least stretch written past the cache.
      'small.bin': randomBytes(60_000),
      // One chunk (a photo), ending mid-page.
      'odd.bin': odd,
      // Exactly one output block, and one page.
      'block.bin': block,
      'page.bin': randomBytes(4096),
      // Cut into chunks (larger than the largest whole chunk) whose content repeats: the same chunk is written at
      // several places in the file, not in the file's order.
      'repeat.bin': Buffer.concat([block, block, randomBytes(777), block, block, block]),
      // Larger than a restore segment: written by several jobs at once, which meet at unaligned offsets.
      'large.bin': randomBytes(33 * 1024 * 1024 + 5),
      // Chunks shared with another file, at other offsets.
      'shared.bin': Buffer.concat([randomBytes(3), odd.subarray(1000)]),
    };
    for (const [name, bytes] of Object.entries(files)) fs.writeFileSync(path.join(media, name), bytes);
    const dbFile = path.join(work, 'clinic.sqlite');
    makeClinicDb(dbFile, 2000);

    const { vault } = await Vault.init(path.join(work, 'vault'), PASS);
    const r = await backup(vault, { sqlite: [dbFile], folders: [media], appVersion: 'test', tmpDir: path.join(work, 'tmp') });
    expect(r.partial).toBe(false);
    const target = path.join(work, 'restore');
    const res = await restore(vault, await vault.readSnapshot(r.snapshotId), { target });
    expect(res.failed).toEqual([]);
    for (const [name, bytes] of Object.entries(files)) {
      expect(sha(fs.readFileSync(path.join(target, 'media', name))), name).toBe(sha(bytes));
    }
    expect(res.databases[0]!.ok).toBe(true);
    expect(dbContent(path.join(target, 'clinic.sqlite'))).toEqual(dbContent(dbFile));
    expect(fs.readdirSync(path.join(target, 'media')).sort()).toEqual(Object.keys(files).sort());

    // Where the file system takes O_DIRECT, nearly all of the media went past the page cache and none of the
    // database; elsewhere everything went through it.
    const mediaBytes = Object.values(files).reduce((a, b) => a + b.length, 0);
    if (directWorks(work)) {
      expect(res.directBytes).toBeGreaterThan(0.9 * mediaBytes);
      expect(res.directBytes).toBeLessThanOrEqual(mediaBytes);
    } else {
      expect(res.directBytes).toBe(0);
    }
  }, 120_000);
});

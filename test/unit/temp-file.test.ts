// A pack being made (TempFile): bytes staged in 1 MiB blocks, full blocks written past the page cache where the file
// system allows it, the rest through it. Whatever the path, the committed file holds exactly the bytes appended.
import { describe, expect, it } from 'vitest';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { createHash, randomBytes } from 'node:crypto';
import { spawnSync } from 'node:child_process';
import { TempFile, WriteBlocks } from '../../src-main/engine/vault/storage.js';
import { tempDir } from '../helpers/clinic.js';
import { BIN, cliEnv } from '../helpers/cli.js';

/** Pieces of awkward sizes (a few bytes to ~1.5 MiB, so some cross block boundaries), 3.3 MiB in all. */
function pieces(): Buffer[] {
  const sizes = [5, 4096, 1_500_000, 17, 700_000, 1_048_576, 3, 160_000];
  return sizes.map((n) => randomBytes(n));
}

const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

async function writeThrough(blocks: WriteBlocks, dir: string, name: string, parts: Buffer[]): Promise<string> {
  const file = await TempFile.create(dir, (n) => path.join(dir, n), blocks);
  for (const p of parts) {
    const copy = Buffer.from(p);
    await file.append([copy]);
    copy.fill(0xee); // the caller may reuse its buffer as soon as append resolves
  }
  await file.commit(name);
  return path.join(dir, name);
}

describe('TempFile', () => {
  for (const direct of [undefined, false] as const) {
    it(`commits exactly the bytes appended (${direct === false ? 'page cache only' : 'O_DIRECT where possible'})`, async () => {
      const dir = tempDir();
      const blocks = new WriteBlocks(2);
      blocks.direct = direct;
      const parts = pieces();
      const file = await writeThrough(blocks, dir, 'pack-a', parts);
      expect(sha(fs.readFileSync(file))).toBe(sha(Buffer.concat(parts)));
      if (direct === false) expect(blocks.direct).toBe(false);
      // Two blocks are enough for any number of files one after the other: each block comes back when written.
      const again = pieces().reverse();
      const second = await writeThrough(blocks, dir, 'pack-b', again);
      expect(sha(fs.readFileSync(second))).toBe(sha(Buffer.concat(again)));
      expect(fs.readdirSync(dir).sort()).toEqual(['pack-a', 'pack-b']);
    });
  }

  it('leaves nothing behind when aborted, never replaces a committed file, and gives its blocks back', async () => {
    const dir = tempDir();
    const blocks = new WriteBlocks(2);
    const first = await writeThrough(blocks, dir, 'pack', [Buffer.from('first')]);
    const aborted = await TempFile.create(dir, (n) => path.join(dir, n), blocks);
    await aborted.append(pieces());
    await aborted.abort();
    expect(fs.readdirSync(dir)).toEqual(['pack']);
    // Same name again (same content name means same bytes): the file already there stays as it is.
    await writeThrough(blocks, dir, 'pack', [Buffer.from('other bytes')]);
    expect(fs.readFileSync(first, 'utf8')).toBe('first');
    expect(fs.readdirSync(dir)).toEqual(['pack']);
  });

  // A PC whose address space is limited (ulimit -v) cannot reserve WebAssembly memory (V8 reserves gigabytes for
  // it): the writer falls back to ordinary memory and the page cache instead of failing the backup.
  it.skipIf(process.platform === 'win32')('backs up and verifies where page-aligned memory cannot be had', () => {
    const dir = tempDir();
    const media = path.join(dir, 'media');
    fs.mkdirSync(media);
    const photo = randomBytes(3_000_000);
    fs.writeFileSync(path.join(media, 'photo.jpg'), photo);
    const env = cliEnv(path.join(dir, 'home'));
    const vault = path.join(dir, 'vault');
    const run = (args: string): { status: number | null; out: string } => {
      const r = spawnSync('bash', ['-c', `ulimit -v 3000000 && "${process.execPath}" "${BIN}" ${args}`], { env, encoding: 'utf8' });
      return { status: r.status, out: r.stdout + r.stderr };
    };
    const probe = spawnSync('bash', ['-c', `ulimit -v 3000000 && "${process.execPath}" -e "new WebAssembly.Memory({ initial: 64, maximum: 64 })"`]);
    expect(probe.status).not.toBe(0); // the condition this test is about holds here
    expect(run(`init --vault "${vault}"`).status).toBe(0);
    const backup = run(`backup --vault "${vault}" --folder "${media}"`);
    expect(backup.out).toMatch(/saved/);
    expect(backup.status).toBe(0);
    expect(run(`verify --vault "${vault}" --read-data`).status).toBe(0);
    const target = path.join(dir, 'restored');
    expect(run(`restore --vault "${vault}" --target "${target}"`).status).toBe(0);
    expect(sha(fs.readFileSync(path.join(target, 'media', 'photo.jpg')))).toBe(sha(photo));
  });
});

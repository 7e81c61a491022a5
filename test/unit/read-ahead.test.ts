// verify reads the next packs ahead of its workers (Storage.readAhead): whatever goes wrong there is left to the
// worker that reads the pack, which reports it; read-ahead itself never fails verify.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { LocalStorage } from '../../src-main/engine/vault/storage.js';
import { tempDir } from '../helpers/clinic.js';

describe('read-ahead of a pack', () => {
  it('never throws, for a missing or unreadable pack, and leaves the file as it was', async () => {
    const dir = tempDir('cv-readahead-');
    const storage = new LocalStorage(dir);
    const scratch = Buffer.alloc(4096);
    await expect(storage.readAhead('data', 'ab'.repeat(32), scratch)).resolves.toBeUndefined();
    const name = 'cd'.repeat(32);
    fs.mkdirSync(path.join(dir, 'data', 'cd'), { recursive: true });
    const bytes = Buffer.alloc(3 * 4096 + 100, 7);
    fs.writeFileSync(storage.filePath('data', name), bytes);
    await expect(storage.readAhead('data', name, scratch)).resolves.toBeUndefined();
    expect(fs.readFileSync(storage.filePath('data', name)).equals(bytes)).toBe(true);
    fs.chmodSync(storage.filePath('data', name), 0o000);
    await expect(storage.readAhead('data', name, scratch)).resolves.toBeUndefined();
    fs.mkdirSync(storage.filePath('data', 'ef'.repeat(32)), { recursive: true }); // a folder where a pack should be
    await expect(storage.readAhead('data', 'ef'.repeat(32), scratch)).resolves.toBeUndefined();
  });
});

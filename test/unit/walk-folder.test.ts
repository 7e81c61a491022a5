// The media folder's walk: what a backup lists, what it reports as not backed up, and in which order. It runs by
// direct calls on a local disk and by parallel calls through the thread pool once a call is slow (a share); both
// must list the same.
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEFAULT_EXCLUDES, walkFolder } from '../../src-main/engine/sources/folder.js';

let root: string;

beforeAll(() => {
  root = fs.mkdtempSync(path.join(os.tmpdir(), 'cv-walk-'));
  const put = (rel: string, bytes: number): void => {
    fs.mkdirSync(path.dirname(path.join(root, rel)), { recursive: true });
    fs.writeFileSync(path.join(root, rel), Buffer.alloc(bytes, 7));
  };
  put('patients/b/scan.pdf', 300);
  put('patients/a/photo 1.jpg', 1000);
  put('patients/a/Thumbs.db', 10);
  put('patients/a/notes~.tmp', 10);
  put('letters/empty.txt', 0);
  fs.mkdirSync(path.join(root, 'patients/c'));
  fs.symlinkSync(path.join(root, 'letters'), path.join(root, 'patients/link'));
  if (process.platform !== 'win32') execFileSync('mkfifo', [path.join(root, 'letters/pipe')]);
});

afterAll(() => fs.rmSync(root, { recursive: true, force: true }));

describe('walkFolder', () => {
  for (const [mode, slowCallMs] of [
    ['direct calls', undefined],
    ['parallel calls (a slow share)', -1],
  ] as const) {
    it(`lists files and folders in name order, skips excluded names, and reports links and pipes (${mode})`, async () => {
      const walk = await walkFolder(root, DEFAULT_EXCLUDES, { slowCallMs });
      expect(walk.files.map((f) => `${f.type} ${f.rel} ${f.size}`)).toEqual([
        'dir letters 0',
        'file letters/empty.txt 0',
        'dir patients 0',
        'dir patients/a 0',
        'file patients/a/photo 1.jpg 1000',
        'dir patients/b 0',
        'file patients/b/scan.pdf 300',
        'dir patients/c 0',
      ]);
      const file = walk.files.find((f) => f.rel === 'patients/b/scan.pdf')!;
      expect(file.abs).toBe(path.join(root, 'patients', 'b', 'scan.pdf'));
      expect(file.ino).toBe(fs.statSync(file.abs).ino);
      expect(walk.skipped).toEqual([
        ...(process.platform !== 'win32' ? [{ path: 'letters/pipe', reason: 'not a regular file' }] : []),
        { path: 'patients/link', reason: 'symbolic link (not followed)' },
      ]);
    });
  }

  it('reports a folder it cannot read instead of failing', async () => {
    const walk = await walkFolder(path.join(root, 'missing'), DEFAULT_EXCLUDES);
    expect(walk.files).toEqual([]);
    expect(walk.skipped).toEqual([{ path: '.', reason: 'file disappeared during the backup' }]);
  });
});

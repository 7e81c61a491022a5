// kill -9 a backup at random points, many times. Afterwards the vault verifies clean, every completed snapshot
// restores exactly, and the next backup succeeds (the dead process's lock is cleared).
import { describe, expect, it } from 'vitest';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { randomBytes } from 'node:crypto';
import { cli, cliAsync, cliEnv } from '../helpers/cli.js';
import { hashTree, makeClinicDb, makeMedia, tempDir, writeFile } from '../helpers/clinic.js';

const RUNS = 24;

describe('crash safety', () => {
  it(`survives kill -9 at random points in ${RUNS} backups`, async () => {
    const work = tempDir();
    const vault = path.join(work, 'vault');
    const media = path.join(work, 'media');
    const db = path.join(work, 'clinic.sqlite');
    const env = cliEnv(path.join(work, 'home'));
    makeMedia(media, 6, 6);
    makeClinicDb(db, 3000);
    expect(cli(['init', '--vault', vault], env).code).toBe(0);
    const expected = new Map<string, Record<string, string>>();
    const snapshotIds = (): string[] => fs.readdirSync(path.join(vault, 'snapshots')).filter((f) => !f.startsWith('.'));
    let killed = 0;
    for (let i = 0; i < RUNS; i++) {
      // new data every run, so each backup has real writing to do
      writeFile(path.join(media, 'new', `photo_${i}.jpg`), randomBytes(2_000_000 + ((i * 7919) % 3_000_000)));
      const before = new Set(snapshotIds());
      const { child, done } = cliAsync(['backup', '--vault', vault, '--sqlite', db, '--folder', media], env);
      const delay = 20 + Math.floor(Math.random() * 600);
      const timer = setTimeout(() => child.kill('SIGKILL'), delay);
      const r = await done;
      clearTimeout(timer);
      if (r.code !== 0) killed++;
      else expect(r.stderr).not.toMatch(/unexpected error/);
      const added = snapshotIds().filter((s) => !before.has(s));
      expect(added.length).toBeLessThanOrEqual(1);
      if (added[0]) expected.set(added[0], hashTree(media));
      const v = cli(['verify', '--vault', vault, '--json'], env);
      expect(v.code, v.stdout + v.stderr).toBe(0);
    }
    expect(killed).toBeGreaterThanOrEqual(RUNS / 3); // most runs really were interrupted
    // The next backup succeeds and clears the stale lock.
    const final = cli(['backup', '--vault', vault, '--sqlite', db, '--folder', media, '--json'], env);
    expect(final.code, final.stderr).toBe(0);
    expect(fs.readdirSync(path.join(vault, 'locks'))).toEqual([]);
    const id = (JSON.parse(final.stdout) as { id: string }).id;
    expected.set(id, hashTree(media));
    const full = cli(['verify', '--vault', vault, '--read-data', '--json'], env);
    expect(full.code, full.stdout).toBe(0);
    for (const [snap, tree] of expected) {
      const target = path.join(work, 'restore', snap.slice(0, 8));
      const r = cli(['restore', '--vault', vault, '--snapshot', snap, '--target', target], env);
      expect(r.code, r.stderr).toBe(0);
      expect(hashTree(path.join(target, 'media'))).toEqual(tree);
    }
  });
});

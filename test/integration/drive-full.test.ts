// The backup drive fills up mid-backup: a clear message with the numbers, no partial snapshot, earlier backups intact.
import { afterAll, describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { randomBytes } from 'node:crypto';
import { cli, cliEnv } from '../helpers/cli.js';
import { hashTree, tempDir, writeFile } from '../helpers/clinic.js';

const work = tempDir();
const drive = path.join(work, 'small-drive');
fs.mkdirSync(drive);
const mounted = spawnSync('mount', ['-t', 'tmpfs', '-o', 'size=8m', 'tmpfs', drive]).status === 0;
afterAll(() => {
  if (mounted) spawnSync('umount', [drive]);
});
if (!mounted) {
  const why = 'cannot mount a tmpfs here (needs root); the full-drive test is skipped';
  if (process.env.CI) throw new Error(`${why}, but CI requires it`);
  console.warn(why);
}

describe.skipIf(!mounted)('full backup drive', () => {
  it('fails with the free space and what was needed, records no snapshot and keeps earlier ones', () => {
    const env = cliEnv(path.join(work, 'home'));
    const vault = path.join(drive, 'vault');
    const media = path.join(work, 'media');
    writeFile(path.join(media, 'small.jpg'), randomBytes(1_000_000));
    expect(cli(['init', '--vault', vault], env).code).toBe(0);
    expect(cli(['backup', '--vault', vault, '--folder', media], env).code).toBe(0);
    const firstTree = hashTree(media);
    for (let i = 0; i < 4; i++) writeFile(path.join(media, `big_${i}.jpg`), randomBytes(4_000_000));
    const r = cli(['backup', '--vault', vault, '--folder', media], env);
    expect(r.code).toBe(7);
    expect(r.stderr).toMatch(/backup drive is full \([\d.]+ (B|KB|MB) free/);
    expect(r.stderr).toMatch(/needed up to [\d.]+ MB more/);
    expect(r.stderr).toMatch(/earlier backups on the drive are intact/);
    const list = JSON.parse(cli(['snapshots', '--vault', vault, '--json'], env).stdout) as unknown[];
    expect(list).toHaveLength(1);
    expect(fs.readdirSync(path.join(vault, 'locks'))).toEqual([]);
    expect(cli(['verify', '--vault', vault, '--read-data'], env).code).toBe(0);
    const target = path.join(work, 'restored');
    expect(cli(['restore', '--vault', vault, '--target', target], env).code).toBe(0);
    expect(hashTree(path.join(target, 'media'))).toEqual(firstTree);
    const status = JSON.parse(cli(['status', '--json'], env).stdout) as { runs: Array<{ kind: string; status: string; error: string }> };
    const lastBackup = status.runs.find((x) => x.kind === 'backup')!;
    expect(lastBackup.status).toBe('failed');
    expect(lastBackup.error).toMatch(/drive is full/);
  });

  // A disk that fills during a restore gets its clear message, and no partial file stays behind, whether the write
  // that fails is one under way in the background (decision 0029) or one made while a photo's chunk is opened.
  it('a restore onto a full disk says so and leaves no partial file', () => {
    const env = cliEnv(path.join(work, 'home-restore'));
    const vault = path.join(work, 'vault-restore');
    const media = path.join(work, 'media-restore');
    for (let i = 0; i < 3; i++) writeFile(path.join(media, `photo_${i}.jpg`), randomBytes(3_000_000));
    expect(cli(['init', '--vault', vault], env).code).toBe(0);
    expect(cli(['backup', '--vault', vault, '--folder', media], env).code).toBe(0);
    const target = path.join(drive, 'restored');
    const r = cli(['restore', '--vault', vault, '--target', target], env);
    // Not reported as damage to the vault: a write that failed inside a chunk's opening had been (exit 5).
    expect(r.stderr).not.toMatch(/authentication failed|changed|damaged/);
    expect(r.code).toBe(7);
    expect(r.stderr).toMatch(/The restore target .* is full\. Free up space or restore to another disk; [0-2] file\(s\) were restored so far/);
    const left = (dir: string): string[] => fs.readdirSync(dir, { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? left(path.join(dir, e.name)) : [e.name]));
    expect(left(target).filter((n) => n.startsWith('.clinicvault-partial-'))).toEqual([]);
    fs.rmSync(target, { recursive: true, force: true });
  });
});

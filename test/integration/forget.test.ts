// forget through the CLI: the dry run changes nothing, the policy keeps what it says (and tagged backups), the
// vault still verifies and a kept backup still restores.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { backup } from '../../src-main/engine/backup.js';
import { Vault } from '../../src-main/engine/vault/vault.js';
import { cli, cliEnv, PASS } from '../helpers/cli.js';
import { hashTree, tempDir, writeFile } from '../helpers/clinic.js';

describe('forget', () => {
  it('keeps the newest of each of the last N days plus protected tags, and the rest is forgotten safely', async () => {
    const work = tempDir('cv-forget-');
    const media = path.join(work, 'media');
    const vaultDir = path.join(work, 'vault');
    const { vault } = await Vault.init(vaultDir, PASS);
    // Ten nightly backups (23:00 UTC), a changing file each night; the 3rd night is tagged pre-migration.
    for (let i = 0; i < 10; i++) {
      writeFile(path.join(media, `day-${i}.txt`), `day ${i}\n`);
      const when = new Date(Date.UTC(2026, 4, 1 + i, 23, 0, 0));
      await backup(vault, { folders: [media], appVersion: 'test', now: () => when, tags: i === 2 ? ['pre-migration'] : [] });
    }
    const newestTree = hashTree(media);
    const env = cliEnv(path.join(work, 'home'));
    const list = (): Array<{ id: string; time: string }> => JSON.parse(cli(['snapshots', '--vault', vaultDir, '--json'], env).stdout);
    expect(list()).toHaveLength(10);

    const dry = cli(['forget', '--vault', vaultDir, '--keep-daily', '3', '--time-zone', 'UTC', '--dry-run', '--json'], env);
    expect(dry.code).toBe(0);
    const plan = JSON.parse(dry.stdout);
    expect(plan.forgotten).toHaveLength(6);
    expect(list()).toHaveLength(10);
    expect(plan.kept.map((k: { time: string; reasons: string[] }) => [k.time.slice(0, 10), k.reasons])).toEqual([
      ['2026-05-10', ['daily 1']],
      ['2026-05-09', ['daily 2']],
      ['2026-05-08', ['daily 3']],
      ['2026-05-03', ['tag pre-migration']],
    ]);

    const real = cli(['forget', '--vault', vaultDir, '--keep-daily', '3', '--time-zone', 'UTC'], env);
    expect(real.code).toBe(0);
    expect(real.stdout).toMatch(/Forgot 6 backup\(s\); 4 kept/);
    expect(list().map((s) => s.time.slice(0, 10)).sort()).toEqual(['2026-05-03', '2026-05-08', '2026-05-09', '2026-05-10']);
    expect(cli(['verify', '--vault', vaultDir, '--read-data'], env).code).toBe(0);
    const target = path.join(work, 'restore');
    expect(cli(['restore', '--vault', vaultDir, '--snapshot', 'latest', '--target', target], env).code).toBe(0);
    expect(hashTree(path.join(target, 'media'))).toEqual(newestTree);
    expect(fs.existsSync(path.join(target, 'media', 'day-9.txt'))).toBe(true);

    const none = cli(['forget', '--vault', vaultDir, '--keep-daily', '0'], env);
    expect(none.code).toBe(2);
    expect(none.stderr).toMatch(/would keep no backups/);
  });
});

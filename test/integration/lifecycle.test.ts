// Per-destination retention and space accounting through the CLI: each vault keeps its own policy (in its
// config.json, so it travels with the drive), forget applies it, and `space` shows what each backup alone holds,
// what prune can reclaim, the growth rate and the forecast.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { randomBytes } from 'node:crypto';
import { beforeAll, describe, expect, it } from 'vitest';
import { backup } from '../../src-main/engine/backup.js';
import { Vault } from '../../src-main/engine/vault/vault.js';
import { cli, cliEnv, PASS } from '../helpers/cli.js';
import { tempDir, writeFile } from '../helpers/clinic.js';

const SCAN = 1_500_000;

describe('per-destination policies and space accounting', () => {
  let work: string;
  let env: NodeJS.ProcessEnv;
  const vaults: Record<'local' | 'offsite', string> = { local: '', offsite: '' };
  beforeAll(async () => {
    work = tempDir('cv-lifecycle-');
    env = cliEnv(path.join(work, 'home'));
    const media = path.join(work, 'media');
    writeFile(path.join(media, 'shared.jpg'), randomBytes(500_000));
    const opened: Vault[] = [];
    for (const k of ['local', 'offsite'] as const) {
      vaults[k] = path.join(work, k);
      opened.push((await Vault.init(vaults[k], PASS)).vault);
    }
    // Six nights; each night's 1.5 MB scan replaces the one before.
    for (let d = 0; d < 6; d++) {
      if (d > 0) fs.rmSync(path.join(media, `scan-${d - 1}.pdf`));
      writeFile(path.join(media, `scan-${d}.pdf`), randomBytes(SCAN));
      for (const v of opened) await backup(v, { folders: [media], appVersion: 'test', now: () => new Date(Date.UTC(2026, 8, 1 + d, 22)) });
    }
  });

  it('each vault keeps its own policy, and forget uses it', () => {
    expect(cli(['policy', '--vault', vaults.local, '--keep-last', '2'], env).stdout).toMatch(/This vault keeps: the last 2, anything tagged pre-migration or pre-restore/);
    const mars = cli(['policy', '--vault', vaults.offsite, '--time-zone', 'Mars/Olympus'], env);
    expect(mars.code).toBe(2);
    expect(mars.stderr).toMatch(/Cannot use this retention policy: Invalid time zone/);
    expect(JSON.parse(fs.readFileSync(path.join(vaults.offsite, 'config.json'), 'utf8')).retention).toBeUndefined();
    expect(cli(['policy', '--vault', vaults.offsite, '--keep-daily', '4', '--time-zone', 'Europe/Berlin'], env).code).toBe(0);
    expect(JSON.parse(cli(['policy', '--vault', vaults.offsite, '--json'], env).stdout)).toMatchObject({ isDefault: false, policy: { daily: 4, timeZone: 'Europe/Berlin' } });
    expect(JSON.parse(fs.readFileSync(path.join(vaults.offsite, 'config.json'), 'utf8')).retention.daily).toBe(4);
    const plan = (v: string): { forgotten: string[]; kept: Array<{ reasons: string[] }> } => JSON.parse(cli(['forget', '--vault', v, '--dry-run', '--json'], env).stdout);
    expect(plan(vaults.local).forgotten).toHaveLength(4);
    expect(plan(vaults.offsite).forgotten).toHaveLength(2);
    expect(plan(vaults.offsite).kept.map((k) => k.reasons)).toEqual([['daily 1'], ['daily 2'], ['daily 3'], ['daily 4']]);
    // Flags still win over the vault's policy.
    expect(JSON.parse(cli(['forget', '--vault', vaults.offsite, '--keep-last', '5', '--dry-run', '--json'], env).stdout).forgotten).toHaveLength(1);
  });

  it('space: what each backup alone holds, what prune reclaims, the growth and the forecast', () => {
    const space = (): {
      snapshots: Array<{ uniqueBytes: number; logicalBytes: number }>;
      vault: { packBytes: number; usedBytes: number; reclaimableBytes: number };
      drive: { freeBytes: number };
      growth: { bytesPerDay: number; days: number; backups: number };
      forecast: { daysUntilFull: number };
    } => JSON.parse(cli(['space', '--vault', vaults.local, '--json'], env).stdout);
    const before = space();
    expect(before.snapshots).toHaveLength(6);
    for (const s of before.snapshots) {
      // Its own scan (sealed: a little more than the plaintext), not the photo every backup shares.
      expect(s.uniqueBytes).toBeGreaterThanOrEqual(SCAN);
      expect(s.uniqueBytes).toBeLessThan(SCAN + 2000);
      expect(s.logicalBytes).toBe(SCAN + 500_000);
    }
    expect(before.vault.reclaimableBytes).toBeLessThan(10_000);
    expect(before.growth).toMatchObject({ days: 5, backups: 6 });
    expect(before.growth.bytesPerDay).toBeGreaterThanOrEqual(SCAN);
    expect(before.growth.bytesPerDay).toBeLessThan(SCAN + 5000);
    expect(before.forecast.daysUntilFull).toBe(Math.floor(before.drive.freeBytes / before.growth.bytesPerDay));
    const text = cli(['space', '--vault', vaults.local], env).stdout;
    expect(text).toMatch(/At that rate the drive is full in about \d+ day\(s\), around \d{4}-\d\d-\d\d/);

    // forget --dry-run --prune estimates what forget then prune will free, counting the backups it would forget.
    const estimate = JSON.parse(cli(['forget', '--vault', vaults.local, '--dry-run', '--prune', '--json'], env).stdout).prune;
    const estimatedFree = estimate.bytesBefore - estimate.bytesAfter;
    expect(estimatedFree).toBeGreaterThanOrEqual(4 * SCAN);
    expect(cli(['forget', '--vault', vaults.local], env).code).toBe(0);
    const forgotten = space();
    expect(forgotten.vault.reclaimableBytes).toBeGreaterThanOrEqual(4 * SCAN);
    expect(cli(['prune', '--vault', vaults.local], env).code).toBe(0);
    const pruned = space();
    expect(pruned.vault.reclaimableBytes).toBeLessThan(10_000);
    expect(before.vault.packBytes - pruned.vault.packBytes).toBeGreaterThanOrEqual(4 * SCAN);
    expect(Math.abs(before.vault.packBytes - pruned.vault.packBytes - estimatedFree)).toBeLessThan(20_000);
  });

  it('a malformed policy in config.json is refused with the way to fix it', () => {
    const cfgFile = path.join(vaults.offsite, 'config.json');
    const cfg = JSON.parse(fs.readFileSync(cfgFile, 'utf8'));
    fs.writeFileSync(cfgFile, JSON.stringify({ ...cfg, retention: { daily: -1 } }));
    const r = cli(['forget', '--vault', vaults.offsite, '--dry-run'], env);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/retention policy in .*config\.json is not valid \(keep-daily must be a whole number.*\)\. Set it again with "clinicvault policy/);
    // It never stops the rest: the list of backups (and so backups and restores) still works.
    expect(cli(['snapshots', '--vault', vaults.offsite, '--json'], env).code).toBe(0);
    expect(cli(['forget', '--vault', vaults.offsite, '--keep-last', '6', '--dry-run'], env).code).toBe(0);
    fs.writeFileSync(cfgFile, JSON.stringify(cfg));
  });
});

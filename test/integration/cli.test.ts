// The CLI contract: keys, exit codes, JSON listings, inventory rebuild on a new PC.
import { describe, expect, it } from 'vitest';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { cli, cliEnv, PASS } from '../helpers/cli.js';
import { hashTree, makeClinicDb, makeMedia, tempDir } from '../helpers/clinic.js';

function setup(): { work: string; vault: string; env: NodeJS.ProcessEnv; recovery: string; media: string; db: string } {
  const work = tempDir();
  const vault = path.join(work, 'drive', 'vault');
  const env = cliEnv(path.join(work, 'home'));
  const init = cli(['init', '--vault', vault, '--json'], env);
  expect(init.code).toBe(0);
  const recovery = (JSON.parse(init.stdout) as { recoveryKey: string }).recoveryKey;
  const media = path.join(work, 'media');
  const db = path.join(work, 'clinic.sqlite');
  makeMedia(media, 1, 2);
  makeClinicDb(db, 50);
  expect(cli(['backup', '--vault', vault, '--sqlite', db, '--folder', media, '--label', 'nightly'], env).code).toBe(0);
  expect(copiesLeft(work)).toEqual([]);
  return { work, vault, env, recovery, media, db };
}

/** The database copies a backup makes (in the app's tmp folder) that are still there. */
function copiesLeft(work: string): string[] {
  const tmp = path.join(work, 'home', 'tmp');
  return fs.existsSync(tmp) ? fs.readdirSync(tmp).filter((f) => f.startsWith('sqlite-copy-')) : [];
}

describe('clinicvault CLI', () => {
  it('refuses a wrong passphrase and a wrong recovery key with exit code 3 and a clear message', () => {
    const { work, vault, env, recovery } = setup();
    const wrong = cli(['snapshots', '--vault', vault], { ...env, CLINICVAULT_PASSPHRASE: 'not the passphrase' });
    expect(wrong.code).toBe(3);
    expect(wrong.stderr).toMatch(/Wrong passphrase/);
    expect(wrong.stderr).not.toMatch(/at .*\.js/); // no stack trace
    // A backup copies its databases while the passphrase is checked: refused, it leaves no copy behind.
    const wrongBackup = cli(['backup', '--vault', vault, '--sqlite', path.join(work, 'clinic.sqlite')], { ...env, CLINICVAULT_PASSPHRASE: 'not the passphrase' });
    expect(wrongBackup.code).toBe(3);
    expect(copiesLeft(work)).toEqual([]);
    // Nor does a tag that is refused.
    const badTag = cli(['backup', '--vault', vault, '--sqlite', path.join(work, 'clinic.sqlite'), '--tag', 'no spaces please'], env);
    expect(badTag.code).toBe(2);
    expect(badTag.stderr).toMatch(/Tag "no spaces please" may contain only/);
    expect(copiesLeft(work)).toEqual([]);

    const otherKey = path.join(work, 'other.key');
    const other = cli(['init', '--vault', path.join(work, 'other'), '--json'], env);
    fs.writeFileSync(otherKey, (JSON.parse(other.stdout) as { recoveryKey: string }).recoveryKey);
    const wrongKey = cli(['snapshots', '--vault', vault, '--recovery-key-file', otherKey], env);
    expect(wrongKey.code).toBe(3);
    expect(wrongKey.stderr).toMatch(/Wrong recovery key/);

    const typo = path.join(work, 'typo.key');
    fs.writeFileSync(typo, recovery.slice(0, 3) + (recovery[3] === 'A' ? 'B' : 'A') + recovery.slice(4));
    const t = cli(['snapshots', '--vault', vault, '--recovery-key-file', typo], env);
    expect(t.code).toBe(2);
    expect(t.stderr).toMatch(/group 1 .* typo/);

    const good = path.join(work, 'good.key');
    fs.writeFileSync(good, recovery + '\n');
    const ok = cli(['snapshots', '--vault', vault, '--recovery-key-file', good, '--json'], { ...env, CLINICVAULT_PASSPHRASE: '' });
    expect(ok.code).toBe(0);
  });

  it('says when the vault is not there (exit 4) and when no passphrase is given (exit 2)', () => {
    const { work, vault, env } = setup();
    const gone = cli(['snapshots', '--vault', path.join(work, 'unplugged-drive', 'vault')], env);
    expect(gone.code).toBe(4);
    expect(gone.stderr).toMatch(/plug the drive in/);
    const notVault = cli(['snapshots', '--vault', work], env);
    expect(notVault.code).toBe(4);
    const noPass = cli(['snapshots', '--vault', vault], { ...env, CLINICVAULT_PASSPHRASE: '' });
    expect(noPass.code).toBe(2);
    expect(noPass.stderr).toMatch(/No passphrase given/);
    expect(cli(['backup', '--vault', vault], env).code).toBe(2);
    expect(cli(['frobnicate'], env).code).toBe(2);
    // A file given where a folder is needed, and a folder that is not there, each named for what they are.
    const file = path.join(work, 'notes.txt');
    fs.writeFileSync(file, 'not a vault');
    const fileVault = cli(['snapshots', '--vault', file], env);
    expect(fileVault.code).toBe(4);
    expect(fileVault.stderr).toMatch(/notes\.txt is a file, not a vault folder/);
    const missing = cli(['backup', '--vault', vault, '--folder', path.join(work, 'no-such-folder')], env);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toMatch(/The folder .*no-such-folder does not exist\. Check the path, or connect the drive or share it is on\./);
    const fileFolder = cli(['backup', '--vault', vault, '--folder', file], env);
    expect(fileFolder.code).toBe(2);
    expect(fileFolder.stderr).toMatch(/notes\.txt is a file, not a folder/);
  });

  it('a restore folder or vault folder that cannot be made is named with the reason, and the command ends', () => {
    const { work, vault, env } = setup();
    // Under /proc a folder cannot be made and the system answers ENOENT: Node's recursive mkdir retried that for ever.
    for (const [args, what] of [
      [['restore', '--vault', vault, '--snapshot', 'latest', '--target', '/proc/clinicvault-restore'], 'restore folder /proc/clinicvault-restore'],
      [['init', '--vault', '/proc/clinicvault-vault'], 'vault folder /proc/clinicvault-vault'],
    ] as const) {
      const r = cli([...args], env, 60_000);
      expect(r.code).toBe(2);
      expect(r.stderr).toContain(`Cannot make the ${what}: no folder can be made in that place. Nothing was written.`);
    }
    const file = path.join(work, 'notes.txt');
    fs.writeFileSync(file, 'a file');
    const underFile = cli(['restore', '--vault', vault, '--snapshot', 'latest', '--target', path.join(file, 'restored')], env, 60_000);
    expect(underFile.code).toBe(2);
    expect(underFile.stderr).toMatch(/a part of its path is a file, not a folder/);
  });

  it('lists snapshots as JSON with id, time, tags and sources', () => {
    const { vault, env, db } = setup();
    const r = cli(['snapshots', '--vault', vault, '--json'], env);
    expect(r.code).toBe(0);
    const list = JSON.parse(r.stdout) as Array<{ id: string; time: string; tags: string[]; sources: Array<{ kind: string; label: string; tables?: Record<string, number> }> }>;
    expect(list).toHaveLength(1);
    expect(list[0]!.id).toMatch(/^[0-9a-f]{64}$/);
    expect(new Date(list[0]!.time).toISOString()).toBe(list[0]!.time);
    expect(list[0]!.tags).toEqual(['nightly']);
    expect(list[0]!.sources.map((s) => [s.kind, s.label])).toEqual([['sqlite', path.basename(db)], ['folder', 'media']]);
    expect(list[0]!.sources[0]!.tables).toEqual({ encounters: 150, invoices: 150, patients: 50 });
  });

  it('changes the passphrase without touching data; the old one stops working', () => {
    const { work, vault, env } = setup();
    const before = fs.readdirSync(path.join(vault, 'data')).sort();
    const newPass = 'a brand new passphrase 2026';
    const r = cli(['key', 'change-passphrase', '--vault', vault], { ...env, CLINICVAULT_NEW_PASSPHRASE: newPass });
    expect(r.code).toBe(0);
    expect(fs.readdirSync(path.join(vault, 'data')).sort()).toEqual(before);
    expect(cli(['snapshots', '--vault', vault], env).code).toBe(3);
    const pf = path.join(work, 'pass.txt');
    fs.writeFileSync(pf, newPass);
    expect(cli(['snapshots', '--vault', vault, '--passphrase-file', pf], { ...env, CLINICVAULT_PASSPHRASE: '' }).code).toBe(0);
    const added = cli(['key', 'add-recovery-key', '--vault', vault, '--passphrase-file', pf, '--json', '--replace'], env);
    expect(added.code).toBe(0);
    const kf = path.join(work, 'new.key');
    fs.writeFileSync(kf, (JSON.parse(added.stdout) as { recoveryKey: string }).recoveryKey);
    expect(cli(['snapshots', '--vault', vault, '--recovery-key-file', kf], env).code).toBe(0);
  });

  it('rebuilds the inventory and the audit history on a new PC from the vault alone, then restores', () => {
    const { work, vault, media } = setup();
    const newPc = cliEnv(path.join(work, 'new-pc-home'));
    const rebuilt = cli(['inventory', 'rebuild', '--vault', vault, '--json'], newPc);
    expect(rebuilt.code).toBe(0);
    const r = JSON.parse(rebuilt.stdout) as { snapshots: number; auditImported: number };
    expect(r.snapshots).toBe(1);
    expect(r.auditImported).toBeGreaterThanOrEqual(2); // vault.init, backup.start
    const status = JSON.parse(cli(['status', '--json'], newPc).stdout) as { vaults: Array<{ snapshots: number; reachable: boolean }> };
    expect(status.vaults[0]!.snapshots).toBe(1);
    expect(status.vaults[0]!.reachable).toBe(true);
    const target = path.join(work, 'restored');
    const res = cli(['restore', '--vault', vault, '--snapshot', 'latest', '--target', target], newPc);
    expect(res.code).toBe(0);
    expect(res.stdout).toMatch(/row counts match/);
    expect(hashTree(path.join(target, 'media'))).toEqual(hashTree(media));
    const again = cli(['restore', '--vault', vault, '--target', target], newPc);
    expect(again.code).toBe(9);
    expect(again.stderr).toMatch(/overwrite/);
  });

  it('never puts the passphrase in the inventory or its audit log', () => {
    const { work } = setup();
    const home = path.join(work, 'home');
    for (const f of fs.readdirSync(home).filter((n) => n.startsWith('inventory.sqlite'))) {
      expect(fs.readFileSync(path.join(home, f)).includes(Buffer.from(PASS))).toBe(false);
    }
  });
});

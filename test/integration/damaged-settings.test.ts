// config.json and the key files are plaintext on the drive. A damaged or hand-edited value in them must stop a
// command with a message that says what to do, never hang it or make it take gigabytes, and never cost a backup
// already made: restore and verify go on working.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { cli, cliEnv, type CliResult } from '../helpers/cli.js';
import { hashTree, makeMedia, tempDir, writeFile } from '../helpers/clinic.js';

/** The CLI with a time limit: a command that hangs fails the test. */
const cliWithin = (args: string[], env: NodeJS.ProcessEnv, ms = 60_000): CliResult => cli(args, env, ms);

function setup(): { work: string; vault: string; media: string; env: NodeJS.ProcessEnv; recoveryKeyFile: string } {
  const work = tempDir();
  const vault = path.join(work, 'vault');
  const media = path.join(work, 'media');
  makeMedia(media, 2, 3);
  const env = cliEnv(path.join(work, 'home'));
  const init = cli(['init', '--vault', vault, '--json'], env);
  expect(init.code, init.stderr).toBe(0);
  const recoveryKeyFile = path.join(work, 'recovery.txt');
  fs.writeFileSync(recoveryKeyFile, (JSON.parse(init.stdout) as { recoveryKey: string }).recoveryKey);
  const first = cli(['backup', '--vault', vault, '--folder', media], env);
  expect(first.code, first.stderr).toBe(0);
  return { work, vault, media, env, recoveryKeyFile };
}

/** The parts of config.json and of a key file these tests damage. */
interface Settings {
  version: unknown;
  packSize: unknown;
  kdf: Record<string, unknown>;
  chunking: Record<string, Record<string, unknown>>;
}

function editJson<T = Settings>(file: string, edit: (j: T) => void): void {
  const j = JSON.parse(fs.readFileSync(file, 'utf8')) as T;
  edit(j);
  fs.writeFileSync(file, JSON.stringify(j, null, 2));
}

describe('damaged settings on the drive', () => {
  const damages: Array<[string, (c: Settings) => void, RegExp]> = [
    ['a largest chunk of 0 (a backup cut empty chunks for ever)', (c) => (c.chunking.files!.max = 0), /chunking\.files needs whole numbers/],
    ['min above max', (c) => (c.chunking.files!.min = 16 * 1024 * 1024), /chunking\.files needs whole numbers/],
    ['a pack size of 0', (c) => (c.packSize = 0), /packSize is 0/],
    ['a database page chunk size that is text', (c) => (c.chunking.sqlite!.minBytes = 'big'), /chunking\.sqlite/],
    ['an impossible scrypt N', (c) => (c.kdf.N = 1000), /kdf's N is 1000/],
  ];
  it.each(damages)('%s: backup refuses with what to do, writes nothing, and the last backup still restores and verifies', (_name, damage, says) => {
    const { work, vault, media, env } = setup();
    editJson(path.join(vault, 'config.json'), damage);
    writeFile(path.join(media, 'new.txt'), 'added after the damage');
    const before = hashTree(vault);

    const r = cliWithin(['backup', '--vault', vault, '--folder', media], env);
    expect(r.code).toBe(5);
    expect(r.stderr).toMatch(says);
    expect(r.stderr).toMatch(/config\.json .* is damaged/);
    expect(r.stderr).toMatch(/Nothing was written to the vault, and its backups still restore and verify/);
    expect(hashTree(vault)).toEqual(before);

    const target = path.join(work, 'restored');
    const restored = cliWithin(['restore', '--vault', vault, '--snapshot', 'latest', '--target', target], env);
    expect(restored.code, restored.stderr).toBe(0);
    const want = hashTree(media);
    delete want['new.txt'];
    expect(hashTree(path.join(target, 'media'))).toEqual(want);
    const verified = cliWithin(['verify', '--vault', vault, '--read-data'], env);
    expect(verified.code, verified.stderr).toBe(0);
  });

  it('prune and a passphrase change refuse the same way; listing the backups does not need the settings', () => {
    const { vault, env, work } = setup();
    editJson(path.join(vault, 'config.json'), (c) => (c.packSize = -1));
    const before = hashTree(vault);
    const pruned = cliWithin(['prune', '--vault', vault], env);
    expect(pruned.code).toBe(5);
    expect(pruned.stderr).toMatch(/packSize is -1/);
    const newPass = path.join(work, 'new-pass.txt');
    fs.writeFileSync(newPass, 'a brand new passphrase');
    const changed = cliWithin(['key', 'change-passphrase', '--vault', vault, '--new-passphrase-file', newPass], env);
    expect(changed.code).toBe(5);
    expect(changed.stderr).toMatch(/packSize is -1/);
    expect(hashTree(vault)).toEqual(before);
    const listed = cliWithin(['snapshots', '--vault', vault], env);
    expect(listed.code, listed.stderr).toBe(0);
  });

  it('a config.json without a valid version or id is reported as damaged, not as a crash', () => {
    const { vault, env } = setup();
    editJson(path.join(vault, 'config.json'), (c) => (c.version = 'three'));
    const r = cliWithin(['snapshots', '--vault', vault], env);
    expect(r.code).toBe(5);
    expect(r.stderr).toMatch(/config\.json .* is damaged \(its "version" or "id" is missing or not valid\)/);
  });

  it('damaged lock files are cleared as stale, said so, and the backup goes ahead', () => {
    const { vault, media, env } = setup();
    fs.writeFileSync(path.join(vault, 'locks', 'a-null.json'), 'null');
    fs.writeFileSync(path.join(vault, 'locks', 'b-garbage.json'), '{"host": "x", "pi');
    const r = cliWithin(['backup', '--vault', vault, '--folder', media], env);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr.match(/Cleared a stale lock/g)).toHaveLength(2);
    expect(fs.readdirSync(path.join(vault, 'locks'))).toEqual([]);
  });

  it.each([
    ['a key file without its kdf', '{"version":1,"kind":"passphrase","data":"AAAA"}'],
    ['a key file that is not JSON', '{"version":1,"kind":"pass'],
  ])('%s: the passphrase is reported as not checkable, not as wrong or as a crash; the recovery key opens the vault', (_name, text) => {
    const { vault, env, recoveryKeyFile } = setup();
    const keys = path.join(vault, 'keys');
    const slot = fs.readdirSync(keys).find((f) => f.startsWith('passphrase-'))!;
    fs.writeFileSync(path.join(keys, slot), text);
    const r = cliWithin(['snapshots', '--vault', vault], env);
    expect(r.code).toBe(5);
    expect(r.stderr).toMatch(new RegExp(`keys/${slot} is damaged \\(it is not a readable key slot\\)`));
    expect(r.stderr).not.toMatch(/unexpected error/);
    const opened = cliWithin(['snapshots', '--vault', vault, '--recovery-key-file', recoveryKeyFile], { ...env, CLINICVAULT_PASSPHRASE: '' });
    expect(opened.code, opened.stderr).toBe(0);
  });

  it('a key file asking scrypt for gigabytes is not tried: the passphrase cannot open it, the recovery key can, and a new passphrase replaces it', () => {
    const { vault, env, work, recoveryKeyFile } = setup();
    const keys = path.join(vault, 'keys');
    const slot = fs.readdirSync(keys).find((f) => f.startsWith('passphrase-'))!;
    // N = 2^24 with r = 8 would need 16 GiB of memory.
    editJson<{ kdf: Record<string, unknown> }>(path.join(keys, slot), (s) => (s.kdf.N = 2 ** 24));

    const r = cliWithin(['snapshots', '--vault', vault], env, 30_000);
    expect(r.code).toBe(5);
    expect(r.stderr).toMatch(new RegExp(`keys/${slot} is damaged \\(its scrypt N is 16777216`));
    expect(r.stderr).toMatch(/Open the vault with its recovery key instead/);

    const withKey = { ...env, CLINICVAULT_PASSPHRASE: '' };
    expect(cliWithin(['snapshots', '--vault', vault, '--recovery-key-file', recoveryKeyFile], withKey).code).toBe(0);
    const newPass = path.join(work, 'new-pass.txt');
    fs.writeFileSync(newPass, 'a brand new passphrase');
    const changed = cliWithin(['key', 'change-passphrase', '--vault', vault, '--recovery-key-file', recoveryKeyFile, '--new-passphrase-file', newPass], withKey);
    expect(changed.code, changed.stderr).toBe(0);
    expect(fs.existsSync(path.join(keys, slot))).toBe(false);
    const reopened = cliWithin(['snapshots', '--vault', vault], { ...env, CLINICVAULT_PASSPHRASE: 'a brand new passphrase' });
    expect(reopened.code, reopened.stderr).toBe(0);
  });
});

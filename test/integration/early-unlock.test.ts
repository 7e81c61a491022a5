// The CLI starts the vault's key derivation before the rest of it loads (early-unlock.ts). The unlock takes that
// derivation only for the same passphrase, salt and parameters, once; a wrong passphrase is refused as before, and a
// command that does not open the vault starts nothing (a started derivation would hold the process ~0.3 s).
import * as fs from 'node:fs';
import * as path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { startEarlyUnlock } from '../../src-main/cli/early-unlock.js';
import { derivationsAhead, randomBytes, scryptKey } from '../../src-main/engine/vault/crypto.js';
import { Vault } from '../../src-main/engine/vault/vault.js';
import { PASS } from '../helpers/cli.js';
import { tempDir } from '../helpers/clinic.js';

const saved = process.env.CLINICVAULT_PASSPHRASE;
afterEach(() => {
  if (saved === undefined) delete process.env.CLINICVAULT_PASSPHRASE;
  else process.env.CLINICVAULT_PASSPHRASE = saved;
});

describe('the early unlock', () => {
  it('hands a derivation started ahead to the next call with the same secret, once', async () => {
    const salt = randomBytes(32);
    const params = { N: 1024, r: 8, p: 1 };
    const early = scryptKey('the right passphrase', salt, params, true);
    expect(scryptKey('another passphrase', salt, params)).not.toBe(early);
    expect(scryptKey('the right passphrase', randomBytes(32), params)).not.toBe(early);
    expect(scryptKey('the right passphrase', salt, params)).toBe(early);
    const again = scryptKey('the right passphrase', salt, params);
    expect(again).not.toBe(early);
    expect(await again).toEqual(await early);
    expect(derivationsAhead()).toBe(0);
  });

  it('opens the vault with the passphrase from the environment or a file, and still refuses a wrong one', async () => {
    const work = tempDir('cv-early-unlock-');
    const dir = path.join(work, 'vault');
    const { vault } = await Vault.init(dir, PASS);

    process.env.CLINICVAULT_PASSPHRASE = PASS;
    await startEarlyUnlock(['node', 'clinicvault', 'init', '--vault', dir]);
    await startEarlyUnlock(['node', 'clinicvault', 'verify', '--vault', dir, '--help']);
    await startEarlyUnlock(['node', 'clinicvault', 'verify', '--recovery-key-file', path.join(work, 'none'), '--vault', dir]);
    expect(derivationsAhead()).toBe(0);

    await startEarlyUnlock(['node', 'clinicvault', 'verify', `--vault=${dir}`]);
    expect(derivationsAhead()).toBe(1);
    expect((await Vault.open(dir, { passphrase: PASS })).keys).toEqual(vault.keys);
    expect(derivationsAhead()).toBe(0);

    process.env.CLINICVAULT_PASSPHRASE = 'not the passphrase at all';
    await startEarlyUnlock(['node', 'clinicvault', 'restore', '--vault', dir]);
    expect(derivationsAhead()).toBe(1);
    await expect(Vault.open(dir, { passphrase: 'not the passphrase at all' })).rejects.toThrow(/Wrong passphrase/);
    expect(derivationsAhead()).toBe(0);

    const file = path.join(work, 'pass.txt');
    fs.writeFileSync(file, `${PASS}\n`, { mode: 0o600 });
    await startEarlyUnlock(['node', 'clinicvault', 'backup', '--vault', dir, '--passphrase-file', file]);
    expect(derivationsAhead()).toBe(1);
    expect((await Vault.open(dir, { passphrase: PASS })).keys).toEqual(vault.keys);
    expect(derivationsAhead()).toBe(0);
  });
});

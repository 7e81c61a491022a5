// The vault's lock is every writer's first write to the drive: a drive that refuses writes is reported there, in
// words the owner can act on, before any work is done.
import { describe, expect, it } from 'vitest';
import { VaultLock } from '../../src-main/engine/vault/lock.js';
import type { Storage } from '../../src-main/engine/vault/storage.js';
import { ExitCode } from '../../src-main/engine/errors.js';

/** A drive on which every write fails with `code`. */
function refusingDrive(code: string): Storage {
  const refuse = (): Promise<never> => Promise.reject(Object.assign(new Error(`${code}: refused`), { code }));
  return {
    location: '/media/backup/vault',
    write: refuse,
    remove: refuse,
    read: refuse,
    readAt: refuse,
    size: refuse,
    readAhead: () => Promise.resolve(),
    list: () => Promise.resolve([]),
    exists: () => Promise.resolve(false),
  };
}

describe('VaultLock on a drive that refuses writes', () => {
  it('a read-only (write-protected) drive: says so and what to do', async () => {
    const err = await VaultLock.acquire(refusingDrive('EROFS'), 'backup').catch((e: unknown) => e as Error & { exitCode: number });
    expect(err.message).toBe(
      "The drive holding the vault /media/backup/vault is read-only (write-protected), so nothing can be written to it. Nothing was changed. Check the drive's write-protect switch, or connect it so that it can be written. Restore and verify work as it is.",
    );
    expect(err.exitCode).toBe(ExitCode.usage);
  });

  it('no permission: says so and what to do', async () => {
    const err = await VaultLock.acquire(refusingDrive('EACCES'), 'backup').catch((e: unknown) => e as Error);
    expect(err.message).toMatch(/^ClinicVault may not write to the vault \/media\/backup\/vault \(permission denied\)\. Nothing was changed\./);
  });

  it('any other failure is passed on as it is', async () => {
    const err = await VaultLock.acquire(refusingDrive('EIO'), 'backup').catch((e: unknown) => e as Error);
    expect(err.message).toBe('EIO: refused');
  });
});

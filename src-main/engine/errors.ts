// Errors with meaning. Every error the engine raises on purpose is a ClinicVaultError carrying a plain-language
// message for the clinic owner and the exit code the CLI documents; anything else is a bug.

export const ExitCode = {
  ok: 0,
  failure: 1,
  usage: 2,
  wrongKey: 3,
  vaultNotFound: 4,
  damage: 5,
  partial: 6,
  driveFull: 7,
  locked: 8,
  refused: 9,
} as const;
export type ExitCodeValue = (typeof ExitCode)[keyof typeof ExitCode];

export class ClinicVaultError extends Error {
  readonly exitCode: ExitCodeValue;
  constructor(message: string, exitCode: ExitCodeValue = ExitCode.failure, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
    this.exitCode = exitCode;
  }
}

/** A mistake in what the user asked for (bad flag, malformed config). */
export class UsageError extends ClinicVaultError {
  constructor(message: string) {
    super(message, ExitCode.usage);
  }
}

/** The passphrase or recovery key does not open the vault. */
export class WrongKeyError extends ClinicVaultError {
  constructor(message: string) {
    super(message, ExitCode.wrongKey);
  }
}

export class VaultNotFoundError extends ClinicVaultError {
  constructor(message: string) {
    super(message, ExitCode.vaultNotFound);
  }
}

/** Stored data failed authentication or is missing. */
export class DamageError extends ClinicVaultError {
  constructor(message: string) {
    super(message, ExitCode.damage);
  }
}

export class DriveFullError extends ClinicVaultError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, ExitCode.driveFull, options);
  }
}

export class LockedError extends ClinicVaultError {
  constructor(message: string) {
    super(message, ExitCode.locked);
  }
}

/** A request the engine declines for safety (overwrite, path escaping the target, hostile snapshot). */
export class RefusedError extends ClinicVaultError {
  constructor(message: string) {
    super(message, ExitCode.refused);
  }
}

export function isNoSpace(err: unknown): boolean {
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  return code === 'ENOSPC' || code === 'EDQUOT';
}

/** The vault's drive refused a write because it is read-only (write-protected) or this account may not write
 * there: said so, with what to do. Any other error is returned as it is. */
export function cannotWriteVault(location: string, err: unknown): unknown {
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  if (code === 'EROFS') {
    return new UsageError(
      `The drive holding the vault ${location} is read-only (write-protected), so nothing can be written to it. Nothing was changed. Check the drive's write-protect switch, or connect it so that it can be written. Restore and verify work as it is.`,
    );
  }
  if (code === 'EACCES' || code === 'EPERM') {
    return new UsageError(
      `ClinicVault may not write to the vault ${location} (permission denied). Nothing was changed. Give this user account write access to that folder. Restore and verify work as it is.`,
    );
  }
  return err;
}

/** A folder the user named (a restore's target, a new vault) could not be made: why, in words, and what to do. */
export function cannotMakeFolder(what: string, dir: string, err: unknown): ClinicVaultError {
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  const why =
    code === 'EACCES' || code === 'EPERM' ? 'permission denied'
    : code === 'ENOTDIR' ? 'a part of its path is a file, not a folder'
    : code === 'ENOENT' ? 'no folder can be made in that place'
    : code === 'EROFS' ? 'the drive is read-only'
    : isNoSpace(err) ? 'the drive is full'
    : (err as Error).message;
  return new UsageError(`Cannot make the ${what} ${dir}: ${why}. Nothing was written. Choose another folder.`);
}

export function formatBytes(n: number): string {
  const units = ['B', 'KB', 'MB', 'GB', 'TB'];
  let v = n;
  let i = 0;
  while (Math.abs(v) >= 1000 && i < units.length - 1) {
    v /= 1000;
    i++;
  }
  return `${i === 0 ? v.toFixed(0) : v.toFixed(1)} ${units[i]}`;
}

// Where secrets come from: a file, the environment, or a hidden prompt on a terminal. Never from argv.
import * as fsp from 'node:fs/promises';
import { UsageError } from '../engine/errors.js';
import type { Secret } from '../engine/vault/keys.js';

export interface SecretFlags {
  passphraseFile?: string;
  recoveryKeyFile?: string;
}

async function readSecretFile(file: string, what: string): Promise<string> {
  let text: string;
  try {
    text = await fsp.readFile(file, 'utf8');
  } catch (err) {
    throw new UsageError(`Cannot read the ${what} file ${file}: ${(err as NodeJS.ErrnoException).code === 'ENOENT' ? 'it does not exist' : (err as Error).message}.`);
  }
  const value = text.replace(/\r?\n$/, '');
  if (!value) throw new UsageError(`The ${what} file ${file} is empty.`);
  return value;
}

function interactive(): boolean {
  return !!process.stdin.isTTY && !!process.stderr.isTTY;
}

/** The secret that opens an existing vault, where it can be had without asking: from a file, else the environment. */
export async function givenSecret(flags: SecretFlags): Promise<Secret | undefined> {
  if (flags.recoveryKeyFile) return { recoveryKey: await readSecretFile(flags.recoveryKeyFile, 'recovery key') };
  if (flags.passphraseFile) return { passphrase: await readSecretFile(flags.passphraseFile, 'passphrase') };
  const env = process.env.CLINICVAULT_PASSPHRASE;
  return env ? { passphrase: env } : undefined;
}

/** The secret that opens an existing vault. */
export async function openingSecret(flags: SecretFlags): Promise<Secret> {
  const given = await givenSecret(flags);
  if (given) return given;
  if (interactive()) return { passphrase: await prompt({ message: 'Vault passphrase:', mask: true }, { output: process.stderr }) };
  throw new UsageError('No passphrase given. Set CLINICVAULT_PASSPHRASE, use --passphrase-file FILE (or --recovery-key-file FILE), or run in a terminal to be asked.');
}

/** A new passphrase (init, change): from a file, the environment, or typed twice. */
export async function newPassphrase(file: string | undefined, envName: string, what = 'vault'): Promise<string> {
  if (file) return readSecretFile(file, 'new passphrase');
  const env = process.env[envName];
  if (env) return env;
  if (interactive()) {
    const a = await prompt({ message: `New ${what} passphrase (at least 10 characters):`, mask: true }, { output: process.stderr });
    const b = await prompt({ message: 'Type it again:', mask: true }, { output: process.stderr });
    if (a !== b) throw new UsageError('The two passphrases differ. Nothing was changed; please try again.');
    return a;
  }
  throw new UsageError(`No new passphrase given. Set ${envName}, use a passphrase file, or run in a terminal to be asked.`);
}

/** The terminal prompt, loaded only when a passphrase is asked for (not in scheduled runs). */
async function prompt(config: { message: string; mask: boolean }, context: { output: NodeJS.WritableStream }): Promise<string> {
  const { default: password } = await import('@inquirer/password');
  return password(config, context);
}

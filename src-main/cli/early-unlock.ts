// The command line's head start on the unlock. Before its modules load (~0.1 s of one core; the other idles), the
// CLI reads the key slots of the vault named by --vault and starts scrypt (~0.3 s, on libuv's threads) with the
// passphrase it was given without asking (a file, CLINICVAULT_PASSPHRASE). The unlock then takes that derivation
// (scryptKey) instead of starting its own. Nothing here reports anything: a missing vault, an unreadable file or a
// wrong passphrase is met and reported by the command itself, as without it.
import * as path from 'node:path';
import { deriveAhead } from '../engine/vault/keys.js';
import { LocalStorage } from '../engine/vault/storage.js';
import { givenSecret } from './secrets.js';

/** Commands that open the vault named by --vault with its passphrase (main.ts: openVault, backup). */
const OPENING = new Set(['backup', 'restore', 'verify', 'test-restore', 'snapshots', 'prune', 'forget', 'policy', 'space', 'export', 'erase']);

/** An option's value as commander reads it: `--name value` or `--name=value`, before any `--`. */
function option(args: string[], name: string): string | undefined {
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!;
    if (a === '--') break;
    if (a === name) return args[i + 1];
    if (a.startsWith(`${name}=`)) return a.slice(name.length + 1);
  }
  return undefined;
}

export async function startEarlyUnlock(argv: string[]): Promise<void> {
  const args = argv.slice(2);
  // Only a command that will unlock: a started derivation keeps the process alive until it ends (~0.3 s).
  if (!OPENING.has(args[0] ?? '') || args.includes('--help') || args.includes('-h')) return;
  const vault = option(args, '--vault');
  if (!vault) return;
  try {
    const secret = await givenSecret({ passphraseFile: option(args, '--passphrase-file'), recoveryKeyFile: option(args, '--recovery-key-file') });
    if (secret && 'passphrase' in secret) await deriveAhead(new LocalStorage(path.resolve(vault)), secret.passphrase);
  } catch {
    // Left to the command (an unreadable passphrase file, say).
  }
}

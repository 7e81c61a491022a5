// Key slots: the random master keys (an AES-256-GCM key and a separate HMAC key for chunk ids) wrapped once per
// way of opening the vault. A passphrase slot derives its wrapping key with scrypt; a recovery slot with HKDF
// (the recovery key already has 160 random bits). Changing the passphrase rewrites one small slot file only.
import { randomBytes, randomUUID } from 'node:crypto';
import { AuthError, hkdfKey, open, scryptKey, scryptParamsProblem, seal, type ScryptParams } from './crypto.js';
import type { Storage } from './storage.js';
import { WrongKeyError, DamageError, UsageError } from '../errors.js';
import { decodeRecoveryKey, generateRecoveryKey } from './recovery-key.js';

export interface MasterKeys {
  encryption: Buffer;
  id: Buffer;
}

export type SlotKind = 'passphrase' | 'recovery';

export interface KeySlot {
  version: 1;
  kind: SlotKind;
  created: string;
  kdf: { name: 'scrypt'; N: number; r: number; p: number; salt: string } | { name: 'hkdf-sha256'; salt: string };
  data: string;
}

/** Strong default, OWASP's N=2^15 r=8 p=3 (the same work as N=2^17 p=1): ~0.4 s per attempt, and 32 MiB instead
 * of 128 MiB, so opening a vault does not by itself push a backup past its memory budget (decision 0007). */
export const STRONG_SCRYPT: ScryptParams = { N: 1 << 15, r: 8, p: 3 };
/** For tests only (CLINICVAULT_KDF=test): fast and weak. Stored in the slot, so such a vault stays weak. */
export const TEST_SCRYPT: ScryptParams = { N: 1 << 10, r: 8, p: 1 };
const SLOT_AAD = 'clinicvault:keyslot:v1';
const RECOVERY_INFO = 'clinicvault recovery key v1';
export const MIN_PASSPHRASE = 10;

export function defaultScrypt(): ScryptParams {
  return process.env.CLINICVAULT_KDF === 'test' ? TEST_SCRYPT : STRONG_SCRYPT;
}

export function generateMasterKeys(): MasterKeys {
  return { encryption: randomBytes(32), id: randomBytes(32) };
}

function encodeMaster(keys: MasterKeys): Buffer {
  return Buffer.from(JSON.stringify({ encryption: keys.encryption.toString('base64'), id: keys.id.toString('base64') }));
}

function decodeMaster(buf: Buffer): MasterKeys {
  const j = JSON.parse(buf.toString('utf8')) as { encryption: string; id: string };
  return { encryption: Buffer.from(j.encryption, 'base64'), id: Buffer.from(j.id, 'base64') };
}

export function checkNewPassphrase(passphrase: string): void {
  if ([...passphrase].length < MIN_PASSPHRASE) {
    throw new UsageError(`The passphrase must be at least ${MIN_PASSPHRASE} characters long. A short sentence is easy to remember and hard to guess.`);
  }
}

export async function makePassphraseSlot(keys: MasterKeys, passphrase: string, params = defaultScrypt()): Promise<KeySlot> {
  const salt = randomBytes(32);
  const kek = await scryptKey(passphrase, salt, params);
  return {
    version: 1,
    kind: 'passphrase',
    created: new Date().toISOString(),
    kdf: { name: 'scrypt', ...params, salt: salt.toString('base64') },
    data: seal(kek, encodeMaster(keys), SLOT_AAD).toString('base64'),
  };
}

export function makeRecoverySlot(keys: MasterKeys, recoveryBytes: Buffer): KeySlot {
  const salt = randomBytes(32);
  const kek = hkdfKey(recoveryBytes, salt, RECOVERY_INFO);
  return {
    version: 1,
    kind: 'recovery',
    created: new Date().toISOString(),
    kdf: { name: 'hkdf-sha256', salt: salt.toString('base64') },
    data: seal(kek, encodeMaster(keys), SLOT_AAD).toString('base64'),
  };
}

export type Secret = { passphrase: string } | { recoveryKey: string };

/** A slot that cannot be tried: its key derivation's parameters are out of range (a damaged or planted file). */
class UnusableSlot extends Error {}

async function slotKek(slot: KeySlot, secret: Secret): Promise<Buffer | undefined> {
  const salt = Buffer.from(slot.kdf.salt, 'base64');
  if ('passphrase' in secret) {
    if (slot.kind !== 'passphrase' || slot.kdf.name !== 'scrypt') return undefined;
    const params = { N: slot.kdf.N, r: slot.kdf.r, p: slot.kdf.p };
    const problem = scryptParamsProblem(params);
    if (problem) throw new UnusableSlot(problem);
    return scryptKey(secret.passphrase, salt, params);
  }
  if (slot.kind !== 'recovery' || slot.kdf.name !== 'hkdf-sha256') return undefined;
  return hkdfKey(decodeRecoveryKey(secret.recoveryKey), salt, RECOVERY_INFO);
}

export async function writeSlot(storage: Storage, slot: KeySlot): Promise<string> {
  const name = `${slot.kind}-${randomUUID()}.json`;
  await storage.write('keys', name, Buffer.from(JSON.stringify(slot, null, 2)));
  return name;
}

/** Whether a parsed key file has every field a slot needs, of the right type (the file is plaintext on the drive). */
function isSlot(j: unknown): j is KeySlot {
  const s = j as Partial<KeySlot> | null;
  if (typeof s !== 'object' || s === null || (s.kind !== 'passphrase' && s.kind !== 'recovery') || typeof s.data !== 'string') return false;
  const kdf = s.kdf as Partial<{ name: string; salt: string; N: number; r: number; p: number }> | undefined;
  if (typeof kdf !== 'object' || kdf === null || typeof kdf.salt !== 'string') return false;
  if (kdf.name === 'scrypt') return typeof kdf.N === 'number' && typeof kdf.r === 'number' && typeof kdf.p === 'number';
  return kdf.name === 'hkdf-sha256';
}

/** The vault's key slots, and the names of key files that could not be read or are not slots. */
async function readSlotFiles(storage: Storage): Promise<{ slots: Array<{ name: string; slot: KeySlot }>; damaged: string[] }> {
  const slots: Array<{ name: string; slot: KeySlot }> = [];
  const damaged: string[] = [];
  for (const name of await storage.list('keys')) {
    if (!name.endsWith('.json')) continue;
    try {
      const slot: unknown = JSON.parse((await storage.read('keys', name)).toString('utf8'));
      if (isSlot(slot)) slots.push({ name, slot });
      else damaged.push(name);
    } catch {
      damaged.push(name);
    }
  }
  return { slots, damaged };
}

/** The vault's key slots. A damaged key file is skipped; another slot may still open the vault. */
export async function readSlots(storage: Storage): Promise<Array<{ name: string; slot: KeySlot }>> {
  return (await readSlotFiles(storage)).slots;
}

/** Start deriving the key of the first passphrase slot now, for an unlock with the same passphrase soon after (a
 * command line that must load the rest of its code first, ~0.1 s with one core idle: scrypt takes ~0.3 s on libuv's
 * threads). Never throws: whatever goes wrong here, the unlock itself meets and reports. */
export async function deriveAhead(storage: Storage, passphrase: string): Promise<void> {
  try {
    const kdf = (await readSlots(storage)).find((s) => s.slot.kind === 'passphrase')?.slot.kdf;
    if (kdf?.name !== 'scrypt') return;
    void scryptKey(passphrase, Buffer.from(kdf.salt, 'base64'), { N: kdf.N, r: kdf.r, p: kdf.p }, true);
  } catch {
    // Not a vault, unreadable keys, parameters scrypt refuses: left to the unlock.
  }
}

/** Try every slot of the secret's kind. Returns the keys and the slot that opened them. */
export async function unlock(storage: Storage, secret: Secret): Promise<{ keys: MasterKeys; slotName: string }> {
  const { slots, damaged } = await readSlotFiles(storage);
  const kind: SlotKind = 'passphrase' in secret ? 'passphrase' : 'recovery';
  const candidates = slots.filter((s) => s.slot.kind === kind);
  if (slots.length === 0 && damaged.length === 0) throw new DamageError('The vault has no key files (keys/ is empty or unreadable), so it cannot be opened.');
  let tried = 0;
  // A damaged file named for this kind of slot (its name is all that is left to go by).
  const ownDamaged = damaged.find((name) => name.startsWith(`${kind}-`));
  let unusable: string | undefined = ownDamaged && `the key file keys/${ownDamaged} is damaged (it is not a readable key slot)`;
  for (const { name, slot } of candidates) {
    let kek: Buffer | undefined;
    try {
      kek = await slotKek(slot, secret);
    } catch (err) {
      if (!(err instanceof UnusableSlot)) throw err;
      unusable = `the key file keys/${name} is damaged (its scrypt ${err.message})`;
      continue;
    }
    if (!kek) continue;
    tried++;
    try {
      return { keys: decodeMaster(open(kek, Buffer.from(slot.data, 'base64'), SLOT_AAD, 'key slot')), slotName: name };
    } catch (err) {
      if (!(err instanceof AuthError)) throw err;
    }
  }
  if (unusable && tried === 0) {
    throw new DamageError(
      kind === 'passphrase'
        ? `The passphrase cannot be checked: ${unusable}. Nothing was changed. Open the vault with its recovery key instead, then set the passphrase again ("clinicvault key change-passphrase").`
        : `The recovery key cannot be checked: ${unusable}. Nothing was changed. Open the vault with its passphrase instead, then make a new recovery key ("clinicvault key add-recovery-key --replace").`,
    );
  }
  throw new WrongKeyError(
    kind === 'passphrase'
      ? 'Wrong passphrase: it does not open this vault. Check for typos and Caps Lock, or open it with the recovery key instead.'
      : 'Wrong recovery key: it does not open this vault. Make sure it is the key printed for this vault (each vault has its own).',
  );
}

export { generateRecoveryKey };

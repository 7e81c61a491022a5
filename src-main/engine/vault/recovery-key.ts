// The recovery key: 160 random bits written as 8 groups of 5 Crockford base32 characters. The 5th character of
// each group checks the other four, so a typo is caught and located before any decryption is attempted.
import { randomBytes } from 'node:crypto';
import { UsageError } from '../errors.js';

const ALPHABET = '0123456789ABCDEFGHJKMNPQRSTVWXYZ';
const GROUPS = 8;
const WEIGHTS = [1, 3, 5, 7];
export const RECOVERY_KEY_BYTES = 20;

function checkChar(values: number[], group: number): number {
  let sum = group * 7;
  values.forEach((v, i) => (sum += v * (WEIGHTS[i] ?? 1)));
  return sum % 32;
}

export function encodeRecoveryKey(bytes: Buffer): string {
  if (bytes.length !== RECOVERY_KEY_BYTES) throw new Error('recovery key must be 20 bytes');
  let bits = 0;
  let acc = 0;
  const values: number[] = [];
  for (const b of bytes) {
    acc = (acc << 8) | b;
    bits += 8;
    while (bits >= 5) {
      values.push((acc >>> (bits - 5)) & 31);
      bits -= 5;
    }
  }
  const groups: string[] = [];
  for (let g = 0; g < GROUPS; g++) {
    const part = values.slice(g * 4, g * 4 + 4);
    groups.push(part.map((v) => ALPHABET[v]).join('') + ALPHABET[checkChar(part, g)]);
  }
  return groups.join('-');
}

function charValue(c: string): number {
  const u = c.toUpperCase();
  const mapped = u === 'O' ? '0' : u === 'I' || u === 'L' ? '1' : u;
  return ALPHABET.indexOf(mapped);
}

/** Parse a recovery key as typed by a person: case, spaces, dashes and O/0, I/L/1 confusions are forgiven. */
export function decodeRecoveryKey(text: string): Buffer {
  const clean = text.replace(/[\s-]/g, '');
  if (clean.length !== GROUPS * 5) {
    throw new UsageError(
      `A recovery key has ${GROUPS} groups of 5 characters (40 in all); this one has ${clean.length}. Check that it was copied whole.`,
    );
  }
  const values: number[] = [];
  for (let g = 0; g < GROUPS; g++) {
    const chars = clean.slice(g * 5, g * 5 + 5);
    const vals = [...chars].map(charValue);
    const bad = vals.findIndex((v) => v < 0);
    if (bad >= 0) throw new UsageError(`Recovery key group ${g + 1} ("${chars}") contains "${chars[bad]}", which is not used in recovery keys.`);
    const data = vals.slice(0, 4);
    if (checkChar(data, g) !== vals[4]) {
      throw new UsageError(`Recovery key group ${g + 1} ("${chars}") has a typo: please compare it with the printed key.`);
    }
    values.push(...data);
  }
  const out = Buffer.alloc(RECOVERY_KEY_BYTES);
  let bits = 0;
  let acc = 0;
  let o = 0;
  for (const v of values) {
    acc = ((acc << 5) | v) & 0xffff;
    bits += 5;
    if (bits >= 8) {
      out[o++] = (acc >>> (bits - 8)) & 0xff;
      bits -= 8;
    }
  }
  return out;
}

export function generateRecoveryKey(): { bytes: Buffer; text: string } {
  const bytes = randomBytes(RECOVERY_KEY_BYTES);
  return { bytes, text: encodeRecoveryKey(bytes) };
}
